//! What an Admin Portal setup leaves behind in the emulator, through HTTP: connections,
//! directories and the audit log configuration with their REST routes, the control API's setup
//! steps and their refusals. The Events API is in `events`, the events' payloads in
//! `payloads`, the portal's forms in `portal`.

mod events;
mod payloads;
mod portal;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestEmulator;

/// A WorkOS API call: its status and its body as JSON (`Null` when empty).
pub(crate) async fn call(
    emulator: &TestEmulator,
    method: Method,
    path: &str,
) -> (StatusCode, Value) {
    let response = emulator.api(method, path).send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("a JSON answer")
    };
    (status, body)
}

/// A setup step through the control API, with its status and answer.
pub(crate) async fn try_setup(
    emulator: &TestEmulator,
    organization_id: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = emulator
        .http
        .post(format!(
            "{}/_emulator/organizations/{organization_id}/setup",
            emulator.url
        ))
        .json(&body)
        .send()
        .await
        .expect("setup");
    let status = response.status();
    (status, response.json().await.expect("setup answers JSON"))
}

/// A setup step that must succeed.
pub(crate) async fn setup(emulator: &TestEmulator, organization_id: &str, body: Value) -> Value {
    let (status, answer) = try_setup(emulator, organization_id, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}: {answer}");
    answer
}

/// An organization with the given domains (pending) and its id.
pub(crate) async fn organization(emulator: &TestEmulator, name: &str, domains: &[&str]) -> String {
    let domain_data: Vec<Value> = domains
        .iter()
        .map(|d| json!({"domain": d, "state": "pending"}))
        .collect();
    let org = emulator
        .create_organization(json!({"name": name, "domain_data": domain_data}))
        .await;
    org["id"].as_str().expect("id").to_owned()
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn connections_are_listed_filtered_paged_read_and_deleted() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme", &["acme.example"]).await;
    let globex = organization(&emulator, "Globex", &["globex.example"]).await;
    let mut acme_connections = Vec::new();
    for provider in ["OktaSAML", "AzureSAML", "GitHubOAuth"] {
        let answer = setup(
            &emulator,
            &acme,
            json!({"intent": "sso", "action": "configure", "provider": provider}),
        )
        .await;
        acme_connections.push(answer["connection"]["id"].as_str().expect("id").to_owned());
    }
    let globex_connection = setup(
        &emulator,
        &globex,
        json!({"intent": "sso", "action": "activate"}),
    )
    .await["connection"]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let (status, page) = call(
        &emulator,
        Method::GET,
        &format!("/connections?organization_id={acme}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let newest_first: Vec<String> = acme_connections.iter().rev().cloned().collect();
    assert_eq!(ids(&page), newest_first, "desc is the default");
    let connection = &page["data"][2];
    assert_eq!(connection["object"], "connection");
    assert_eq!(connection["organization_id"], acme.as_str());
    assert_eq!(connection["name"], "Acme", "named after the organization");
    assert_eq!(connection["connection_type"], "OktaSAML");
    assert_eq!(
        (connection["state"].as_str(), connection["status"].as_str()),
        (Some("validating"), Some("unlinked"))
    );
    assert_eq!(connection["domains"][0]["object"], "connection_domain");
    assert_eq!(connection["domains"][0]["domain"], "acme.example");
    for key in ["id", "created_at", "updated_at"] {
        assert!(connection.get(key).is_some(), "{key} in {connection}");
    }

    let query = |q: &str| format!("/connections?{q}");
    let (_, first) = call(
        &emulator,
        Method::GET,
        &query(&format!("organization_id={acme}&limit=2&order=asc")),
    )
    .await;
    assert_eq!(ids(&first), acme_connections[..2]);
    assert_eq!(
        first["list_metadata"],
        json!({"before": null, "after": acme_connections[1]})
    );
    let (_, second) = call(
        &emulator,
        Method::GET,
        &query(&format!(
            "organization_id={acme}&limit=2&order=asc&after={}",
            acme_connections[1]
        )),
    )
    .await;
    assert_eq!(ids(&second), acme_connections[2..]);
    assert_eq!(second["list_metadata"]["after"], Value::Null);
    for (filter, expected) in [
        (
            "connection_type=AzureSAML",
            vec![acme_connections[1].clone()],
        ),
        // The filter enum's spelling and the objects' spelling both work.
        (
            "connection_type=GithubOAuth",
            vec![acme_connections[2].clone()],
        ),
        (
            "connection_type=GitHubOAuth",
            vec![acme_connections[2].clone()],
        ),
        ("domain=globex.example", vec![globex_connection.clone()]),
        ("search=GLOB", vec![globex_connection.clone()]),
        ("search=nobody", vec![]),
    ] {
        let (status, page) = call(&emulator, Method::GET, &query(filter)).await;
        assert_eq!(status, StatusCode::OK, "{filter}");
        assert_eq!(ids(&page), expected, "{filter}");
    }
    for bad in [
        "limit=0",
        "limit=101",
        "order=sideways",
        "connection_type=Carrier",
        "colour=red",
        "before=a&after=b",
    ] {
        let (status, body) = call(&emulator, Method::GET, &query(bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["code"], "invalid_request_parameters");
    }

    let path = format!("/connections/{globex_connection}");
    let (status, fetched) = call(&emulator, Method::GET, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (fetched["state"].as_str(), fetched["status"].as_str()),
        (Some("active"), Some("linked"))
    );
    let (status, body) = call(&emulator, Method::DELETE, &path).await;
    assert_eq!(
        (status, body),
        (StatusCode::NO_CONTENT, Value::Null),
        "204 with no body"
    );
    for method in [Method::GET, Method::DELETE] {
        let (status, body) = call(&emulator, method, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["code"], "entity_not_found");
        assert_eq!(body["entity_id"], globex_connection.as_str());
    }
    assert_eq!(emulator.count("GET /connections").await, 15);
    assert_eq!(emulator.count("DELETE /connections/{id}").await, 2);
}

#[tokio::test]
async fn directories_keep_the_rest_state_vocabulary_and_delete_with_202() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme", &["acme.example"]).await;
    let bare = organization(&emulator, "Bare Corp", &[]).await;
    let answer = setup(
        &emulator,
        &acme,
        json!({"intent": "dsync", "action": "activate", "provider": "okta scim v2.0"}),
    )
    .await;
    let directory = answer["directory"].clone();
    let id = directory["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("directory_") && id.len() == 36, "{id}");
    assert_eq!(directory["object"], "directory");
    assert_eq!(directory["type"], "okta scim v2.0");
    assert_eq!(directory["state"], "linked", "the REST vocabulary");
    assert_eq!(directory["domain"], "acme.example");
    assert_eq!(directory["name"], "Acme");
    assert!(
        directory["external_key"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );
    assert_eq!(
        directory["metadata"],
        json!({"users": {"active": 0, "inactive": 0}, "groups": 0})
    );
    let other = setup(
        &emulator,
        &bare,
        json!({"intent": "dsync", "action": "activate"}),
    )
    .await["directory"]
        .clone();
    assert_eq!(other["type"], "generic scim v2.0");
    assert!(other.get("domain").is_none(), "no domain, no key: {other}");

    let (_, all) = call(&emulator, Method::GET, "/directories").await;
    assert_eq!(
        ids(&all),
        vec![other["id"].as_str().expect("id").to_owned(), id.clone()]
    );
    for (filter, expected) in [
        (format!("organization_id={acme}"), vec![id.clone()]),
        (
            "search=bare".to_owned(),
            vec![other["id"].as_str().expect("id").to_owned()],
        ),
        ("domain=acme.example".to_owned(), vec![id.clone()]),
        ("limit=1&order=asc".to_owned(), vec![id.clone()]),
    ] {
        let (status, page) = call(&emulator, Method::GET, &format!("/directories?{filter}")).await;
        assert_eq!(status, StatusCode::OK, "{filter}");
        assert_eq!(ids(&page), expected, "{filter}");
    }
    let (status, _) = call(&emulator, Method::GET, "/directories?limit=500").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let path = format!("/directories/{id}");
    for (action, state) in [
        ("invalid_credentials", "invalid_credentials"),
        ("unlink", "unlinked"),
    ] {
        let answer = setup(
            &emulator,
            &acme,
            json!({"intent": "dsync", "action": action}),
        )
        .await;
        assert_eq!(answer["events"], json!([]), "WorkOS announces no {action}");
        let (_, fetched) = call(&emulator, Method::GET, &path).await;
        assert_eq!(fetched["state"], state);
    }
    let response = emulator
        .api(Method::DELETE, &path)
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.text().await.expect("body"), "Accepted");
    let (status, body) = call(&emulator, Method::GET, &path).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("entity_not_found"))
    );
    let (status, _) = call(&emulator, Method::DELETE, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_audit_log_configuration_exists_once_audit_logs_or_a_stream_are_set_up() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme", &[]).await;
    let path = format!("/organizations/{acme}/audit_log_configuration");
    for target in [
        path.clone(),
        "/organizations/org_01EHWNCE74X7JSDV0X3SZ3KJNY/audit_log_configuration".to_owned(),
    ] {
        let (status, body) = call(&emulator, Method::GET, &target).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{target}");
        let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["message"], "{body}");
    }
    let answer = setup(
        &emulator,
        &acme,
        json!({"intent": "audit_logs", "action": "enable"}),
    )
    .await;
    assert_eq!(answer["events"], json!([]));
    let expected =
        json!({"organization_id": acme, "retention_period_in_days": 30, "state": "active"});
    assert_eq!(answer["audit_log_configuration"], expected);
    let (status, config) = call(&emulator, Method::GET, &path).await;
    assert_eq!(
        (status, config),
        (StatusCode::OK, expected),
        "no log_stream key without a stream"
    );

    let answer = setup(
        &emulator,
        &acme,
        json!({"intent": "log_streams", "action": "create", "destination": "Splunk"}),
    )
    .await;
    let stream = &answer["audit_log_configuration"]["log_stream"];
    assert!(
        stream["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("als_")),
        "{stream}"
    );
    assert_eq!(
        (stream["type"].as_str(), stream["state"].as_str()),
        (Some("Splunk"), Some("active"))
    );
    assert_eq!(stream["last_synced_at"], Value::Null);
    assert!(
        stream["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    setup(
        &emulator,
        &acme,
        json!({"intent": "log_streams", "action": "error"}),
    )
    .await;
    let (_, config) = call(&emulator, Method::GET, &path).await;
    assert_eq!(config["log_stream"]["state"], "error");
    setup(
        &emulator,
        &acme,
        json!({"intent": "audit_logs", "action": "disable"}),
    )
    .await;
    setup(
        &emulator,
        &acme,
        json!({"intent": "log_streams", "action": "delete"}),
    )
    .await;
    let (_, config) = call(&emulator, Method::GET, &path).await;
    assert_eq!(config["state"], "disabled");
    assert!(config.get("log_stream").is_none(), "{config}");

    // A stream alone creates an active configuration.
    let streamer = organization(&emulator, "Streamer", &[]).await;
    setup(
        &emulator,
        &streamer,
        json!({"intent": "log_streams", "action": "create", "destination": "Datadog"}),
    )
    .await;
    let (status, config) = call(
        &emulator,
        Method::GET,
        &format!("/organizations/{streamer}/audit_log_configuration"),
    )
    .await;
    assert_eq!(
        (status, config["state"].as_str()),
        (StatusCode::OK, Some("active"))
    );
    assert_eq!(
        emulator
            .count("GET /organizations/{id}/audit_log_configuration")
            .await,
        6
    );
}

#[tokio::test]
async fn the_setup_control_names_what_is_wrong() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme", &["acme.example"]).await;
    let (status, body) = try_setup(
        &emulator,
        "org_01EHWNCE74X7JSDV0X3SZ3KJNY",
        json!({"intent": "sso", "action": "configure"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("entity_not_found"))
    );
    for (body, field) in [
        (json!({"action": "configure"}), "intent"),
        (
            json!({"intent": "payroll", "action": "configure"}),
            "intent",
        ),
        (json!({"intent": "sso"}), "action"),
        (json!({"intent": "sso", "action": "explode"}), "action"),
        (
            json!({"intent": "sso", "action": "configure", "provider": "Carrier"}),
            "provider",
        ),
        (
            json!({"intent": "sso", "action": "configure", "domain": "acme.example"}),
            "domain",
        ),
        (
            json!({"intent": "sso", "action": "activate", "connection_id": "conn_01EHWNCE74X7JSDV0X3SZ3KJNY"}),
            "connection_id",
        ),
        (
            json!({"intent": "dsync", "action": "activate", "provider": "okta"}),
            "provider",
        ),
        (
            json!({"intent": "domain_verification", "action": "verify"}),
            "domain",
        ),
        (
            json!({"intent": "domain_verification", "action": "verify", "domain": "other.example"}),
            "domain",
        ),
        (
            json!({"intent": "domain_verification", "action": "fail", "domain": "acme.example", "reason": "bored"}),
            "reason",
        ),
        (
            json!({"intent": "log_streams", "action": "create"}),
            "destination",
        ),
        (
            json!({"intent": "log_streams", "action": "create", "destination": "Fax"}),
            "destination",
        ),
        (
            json!({"intent": "certificate_renewal", "action": "renewal_required", "days_until_expiry": 91}),
            "days_until_expiry",
        ),
        (
            json!({"intent": "bring_your_own_key", "action": "verify", "key_provider": "HSM"}),
            "key_provider",
        ),
        (
            json!({"intent": "bring_your_own_key", "action": "verify", "verified": "yes"}),
            "verified",
        ),
    ] {
        let (status, answer) = try_setup(&emulator, &acme, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert!(
            answer["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .any(|e| e["field"] == field),
            "{field} named for {body}: {answer}"
        );
    }
    // Steps that need something the organization does not have, or would change nothing.
    for body in [
        json!({"intent": "sso", "action": "deactivate"}),
        json!({"intent": "sso", "action": "delete"}),
        json!({"intent": "dsync", "action": "unlink"}),
        json!({"intent": "log_streams", "action": "error"}),
        json!({"intent": "certificate_renewal", "action": "renewed"}),
        json!({"intent": "bring_your_own_key", "action": "delete"}),
    ] {
        let (status, answer) = try_setup(&emulator, &acme, body.clone()).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::CONFLICT, Some("setup_conflict")),
            "{body}"
        );
    }
    setup(
        &emulator,
        &acme,
        json!({"intent": "audit_logs", "action": "enable"}),
    )
    .await;
    let (status, _) = try_setup(
        &emulator,
        &acme,
        json!({"intent": "audit_logs", "action": "enable"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "already enabled");
    setup(
        &emulator,
        &acme,
        json!({"intent": "domain_verification", "action": "verify", "domain": "acme.example"}),
    )
    .await;
    let (status, _) = try_setup(
        &emulator,
        &acme,
        json!({"intent": "domain_verification", "action": "fail", "domain": "acme.example"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "only a pending domain fails");
    let (_, events) = call(&emulator, Method::GET, "/events?events=connection.activated,dsync.activated,organization_domain.verification_failed").await;
    assert_eq!(events["data"], json!([]), "refused steps emit nothing");
}
