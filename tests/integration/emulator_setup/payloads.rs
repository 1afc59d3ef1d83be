//! The payload of every event a setup step, a domain route or an organization change emits,
//! as the Events API lists it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{
    call,
    events::{SETUP_EVENTS, event, events},
    organization, setup,
};
use crate::helpers::TestEmulator;

#[tokio::test]
async fn connection_and_certificate_events_carry_workos_payloads() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme", &["acme.example"]).await;
    let configured = setup(
        &emulator,
        &acme,
        json!({"intent": "sso", "action": "configure", "provider": "OktaSAML"}),
    )
    .await;
    assert_eq!(
        configured["events"],
        json!([]),
        "configuring announces nothing"
    );
    let connection_id = configured["connection"]["id"].clone();
    let activated = setup(
        &emulator,
        &acme,
        json!({"intent": "sso", "action": "activate"}),
    )
    .await;
    assert_eq!(
        activated["connection"]["id"], connection_id,
        "the newest connection"
    );
    let data = event(&emulator, &activated["events"][0]).await["data"].clone();
    assert_eq!(
        (
            data["object"].as_str(),
            data["state"].as_str(),
            data["status"].as_str()
        ),
        (Some("connection"), Some("active"), Some("linked"))
    );
    assert!(
        data["external_key"].as_str().is_some_and(|k| !k.is_empty()),
        "{data}"
    );
    assert_eq!(data["domains"], activated["connection"]["domains"]);
    assert_eq!(data["organization_id"], acme.as_str());

    let required = setup(&emulator, &acme, json!({"intent": "certificate_renewal", "action": "renewal_required", "days_until_expiry": 14})).await;
    let data = event(&emulator, &required["events"][0]).await["data"].clone();
    assert_eq!(
        data["connection"],
        json!({"id": connection_id, "organization_id": acme})
    );
    assert_eq!(data["certificate"]["certificate_type"], "ResponseSigning");
    assert_eq!(data["certificate"]["is_expired"], false);
    assert!(
        data["certificate"]["expiry_date"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(data["days_until_expiry"], 14);
    let renewed = setup(&emulator, &acme, json!({"intent": "certificate_renewal", "action": "renewed", "certificate_type": "RequestSigning"})).await;
    let data = event(&emulator, &renewed["events"][0]).await["data"].clone();
    assert_eq!(data["certificate"]["certificate_type"], "RequestSigning");
    assert!(data["renewed_at"].as_str().is_some());

    let deactivated = setup(
        &emulator,
        &acme,
        json!({"intent": "sso", "action": "deactivate"}),
    )
    .await;
    let data = event(&emulator, &deactivated["events"][0]).await["data"].clone();
    assert_eq!(
        (data["state"].as_str(), data["status"].as_str()),
        (Some("inactive"), Some("unlinked"))
    );
    assert!(data.get("external_key").is_some() && data.get("domains").is_some());
    let deleted = setup(
        &emulator,
        &acme,
        json!({"intent": "sso", "action": "delete", "connection_id": connection_id}),
    )
    .await;
    assert_eq!(
        deleted["deleted"],
        json!({"object": "connection", "id": connection_id})
    );
    let listed = event(&emulator, &deleted["events"][0]).await;
    assert_eq!(listed["event"], "connection.deleted");
    let data = &listed["data"];
    assert_eq!(data["state"], "inactive", "the state before deletion");
    for absent in ["external_key", "status", "domains"] {
        assert!(data.get(absent).is_none(), "{absent} in {data}");
    }
}

#[tokio::test]
async fn directory_domain_and_key_events_carry_workos_payloads() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme", &["acme.example", "late.example"]).await;
    let activated = setup(
        &emulator,
        &acme,
        json!({"intent": "dsync", "action": "activate", "provider": "azure scim v2.0"}),
    )
    .await;
    let data = event(&emulator, &activated["events"][0]).await["data"].clone();
    assert_eq!(data["state"], "active", "the event vocabulary");
    assert_eq!(data["type"], "azure scim v2.0");
    assert!(data["external_key"].as_str().is_some_and(|k| !k.is_empty()));
    assert_eq!(data["domains"][0]["object"], "organization_domain");
    assert_eq!(data["domains"].as_array().map(Vec::len), Some(2));
    assert!(data.get("domain").is_none(), "domains replace domain");
    setup(
        &emulator,
        &acme,
        json!({"intent": "dsync", "action": "unlink"}),
    )
    .await;
    let deleted = setup(
        &emulator,
        &acme,
        json!({"intent": "dsync", "action": "delete"}),
    )
    .await;
    let data = event(&emulator, &deleted["events"][0]).await["data"].clone();
    assert_eq!(
        data["state"], "inactive",
        "unlinked, in the event vocabulary"
    );
    assert!(
        data.get("external_key").is_none() && data.get("domains").is_none(),
        "{data}"
    );

    let failed = setup(
        &emulator,
        &acme,
        json!({"intent": "domain_verification", "action": "fail", "domain": "late.example"}),
    )
    .await;
    assert_eq!(failed["organization_domain"]["state"], "failed");
    let data = event(&emulator, &failed["events"][0]).await["data"].clone();
    assert_eq!(data["reason"], "domain_verification_period_expired");
    assert_eq!(data["organization_domain"]["state"], "failed");
    // A failed domain's verification can be restarted through the API.
    let domain_id = failed["organization_domain"]["id"].as_str().expect("id");
    let (status, verified) = call(
        &emulator,
        Method::POST,
        &format!("/organization_domains/{domain_id}/verify"),
    )
    .await;
    assert_eq!(
        (status, verified["state"].as_str()),
        (StatusCode::CREATED, Some("verified"))
    );
    let control = setup(
        &emulator,
        &acme,
        json!({"intent": "domain_verification", "action": "verify", "domain": "ACME.example"}),
    )
    .await;
    let listed = event(&emulator, &control["events"][0]).await;
    assert_eq!(listed["event"], "organization_domain.verified");
    assert_eq!(listed["data"]["state"], "verified");

    let refused = setup(&emulator, &acme, json!({"intent": "bring_your_own_key", "action": "verify", "key_provider": "GCP_KMS", "verified": false})).await;
    let data = event(&emulator, &refused["events"][0]).await["data"].clone();
    assert_eq!(
        data,
        json!({"organization_id": acme, "key_provider": "GCP_KMS", "verified": false})
    );
    let verified = setup(
        &emulator,
        &acme,
        json!({"intent": "bring_your_own_key", "action": "verify"}),
    )
    .await;
    assert_eq!(
        event(&emulator, &verified["events"][0]).await["data"]["verified"],
        true
    );
    let deleted = setup(
        &emulator,
        &acme,
        json!({"intent": "bring_your_own_key", "action": "delete"}),
    )
    .await;
    let data = event(&emulator, &deleted["events"][0]).await["data"].clone();
    assert_eq!(
        data,
        json!({"organization_id": acme, "key_provider": "AWS_KMS"})
    );
}

#[tokio::test]
async fn domain_routes_and_organization_changes_announce_domain_events() {
    let emulator = TestEmulator::start().await;
    let org = emulator
        .create_organization(json!({"name": "Acme", "domain_data": [
            {"domain": "pending.example", "state": "pending"},
            {"domain": "manual.example", "state": "verified"}]}))
        .await;
    let id = org["id"].as_str().expect("id");
    let names = |list: &Value| -> Vec<(String, String)> {
        list["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|e| {
                (
                    e["event"].as_str().expect("event").to_owned(),
                    e["data"]["domain"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let pair = |event: &str, domain: &str| (event.to_owned(), domain.to_owned());
    let query = format!("events={SETUP_EVENTS}&organization_id={id}&limit=100");
    assert_eq!(
        names(&events(&emulator, &query).await),
        vec![
            pair("organization_domain.created", "pending.example"),
            pair("organization_domain.created", "manual.example"),
            pair("organization_domain.verified", "manual.example"),
        ]
    );
    let added = emulator
        .api(Method::POST, "/organization_domains")
        .json(&json!({"domain": "api.example", "organization_id": id}))
        .send()
        .await
        .expect("create");
    assert_eq!(added.status(), StatusCode::CREATED);
    let (status, updated) = {
        let response = emulator
            .api(Method::PUT, &format!("/organizations/{id}"))
            .json(&json!({"domain_data": [
            {"domain": "pending.example", "state": "verified"},
            {"domain": "manual.example", "state": "verified"},
            {"domain": "new.example", "state": "pending"}]}))
            .send()
            .await
            .expect("update");
        (
            response.status(),
            response.json::<Value>().await.expect("json"),
        )
    };
    assert_eq!(status, StatusCode::OK, "{updated}");
    let new_id = updated["domains"][2]["id"].as_str().expect("id").to_owned();
    let (status, _) = call(
        &emulator,
        Method::DELETE,
        &format!("/organization_domains/{new_id}"),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        names(&events(&emulator, &query).await)[3..],
        [
            pair("organization_domain.created", "api.example"),
            pair("organization_domain.verified", "pending.example"),
            pair("organization_domain.created", "new.example"),
            pair("organization_domain.deleted", "api.example"),
            pair("organization_domain.deleted", "new.example"),
        ]
    );
}

#[tokio::test]
async fn deleting_an_organization_takes_its_setup_with_it() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme", &["acme.example"]).await;
    let connection = setup(
        &emulator,
        &acme,
        json!({"intent": "sso", "action": "activate"}),
    )
    .await["connection"]["id"]
        .clone();
    let directory = setup(
        &emulator,
        &acme,
        json!({"intent": "dsync", "action": "activate"}),
    )
    .await["directory"]["id"]
        .clone();
    setup(
        &emulator,
        &acme,
        json!({"intent": "log_streams", "action": "create", "destination": "S3"}),
    )
    .await;
    let (status, _) = call(&emulator, Method::DELETE, &format!("/organizations/{acme}")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for path in [
        format!("/connections/{}", connection.as_str().expect("id")),
        format!("/directories/{}", directory.as_str().expect("id")),
        format!("/organizations/{acme}/audit_log_configuration"),
    ] {
        assert_eq!(
            call(&emulator, Method::GET, &path).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let (_, remaining) = call(
        &emulator,
        Method::GET,
        &format!("/connections?organization_id={acme}"),
    )
    .await;
    assert_eq!(remaining["data"], json!([]));
    let gone = events(&emulator, &format!("events=connection.deleted,dsync.deleted,organization_domain.deleted&organization_id={acme}")).await;
    let kinds: Vec<(&str, &str)> = gone["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or_default(),
                e["data"]["id"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 3, "{gone}");
    assert_eq!(
        kinds[0],
        ("connection.deleted", connection.as_str().expect("id"))
    );
    assert_eq!(kinds[1], ("dsync.deleted", directory.as_str().expect("id")));
    assert_eq!(kinds[2].0, "organization_domain.deleted");
}
