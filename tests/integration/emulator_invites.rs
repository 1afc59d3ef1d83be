//! IT contacts and their e-mailed Admin Portal invitations in the emulator, through HTTP: every
//! route with its statuses, bodies and refusals, one active invitation per organization, and
//! what removing a contact takes with it. The outbox, the links it carries and what reset and
//! deleting an organization forget are in `links`.

mod links;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestEmulator;

/// A WorkOS API call: its status, its body as JSON (`Null` when empty) and its content type.
pub(crate) async fn send(
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
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("a JSON answer")
    };
    (status, body)
}

/// A new organization's id.
pub(crate) async fn organization(emulator: &TestEmulator, name: &str) -> String {
    let org = emulator.create_organization(json!({ "name": name })).await;
    org["id"].as_str().expect("id").to_owned()
}

/// A new contact's id.
pub(crate) async fn contact(emulator: &TestEmulator, organization_id: &str, email: &str) -> String {
    let (status, body) = send(
        emulator,
        Method::POST,
        &format!("/organizations/{organization_id}/it_contacts"),
        Some(json!({ "email": email })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().expect("id").to_owned()
}

/// Invites a contact: the status and the body.
pub(crate) async fn invite(
    emulator: &TestEmulator,
    organization_id: &str,
    contact_id: &str,
    intents: Value,
) -> (StatusCode, Value) {
    send(
        emulator,
        Method::POST,
        &format!("/organizations/{organization_id}/it_contacts/{contact_id}/invite"),
        Some(json!({ "intents": intents })),
    )
    .await
}

/// Revokes a contact's invitation: the status and the body.
pub(crate) async fn revoke(
    emulator: &TestEmulator,
    organization_id: &str,
    contact_id: &str,
) -> (StatusCode, Value) {
    send(
        emulator,
        Method::POST,
        &format!("/organizations/{organization_id}/it_contacts/{contact_id}/revoke"),
        Some(json!({})),
    )
    .await
}

/// The fields a 422 names.
fn named_fields(body: &Value) -> Vec<String> {
    assert_eq!(body["code"], "invalid_request_parameters", "{body}");
    body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field").to_owned())
        .collect()
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn contacts_are_created_listed_and_paged() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme").await;
    let path = format!("/organizations/{acme}/it_contacts");
    let response = emulator
        .api(Method::POST, &path)
        .json(&json!({"email": "Ada@Acme.example"}))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let first: Value = response.json().await.expect("json");
    assert_eq!(first["object"], "it_contact");
    assert_eq!(first["email"], "Ada@Acme.example", "kept as given");
    let id = first["id"].as_str().expect("id");
    let ulid = id
        .strip_prefix("it_contact_")
        .expect("the emulator's prefix");
    assert_eq!(ulid.len(), 26, "{id}");
    for key in ["created_at", "updated_at"] {
        let at = first[key].as_str().expect(key);
        assert!(at.ends_with('Z') && at.len() == 24, "{key}: {at}");
    }

    let mut created = vec![id.to_owned()];
    for email in ["bob@acme.example", "cy@acme.example"] {
        created.push(contact(&emulator, &acme, email).await);
    }
    let (status, list) = send(&emulator, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["object"], "list");
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(ids(&list), newest_first, "desc is the default");
    assert_eq!(
        list["list_metadata"],
        json!({"before": null, "after": null})
    );
    assert_eq!(list["data"][2], first, "listed as created");

    let (_, page) = send(
        &emulator,
        Method::GET,
        &format!("{path}?limit=2&order=asc"),
        None,
    )
    .await;
    assert_eq!(ids(&page), created[..2]);
    assert_eq!(
        page["list_metadata"],
        json!({"before": null, "after": created[1]})
    );
    let (_, next) = send(
        &emulator,
        Method::GET,
        &format!("{path}?limit=2&order=asc&after={}", created[1]),
        None,
    )
    .await;
    assert_eq!(ids(&next), created[2..]);
    assert_eq!(next["list_metadata"]["after"], Value::Null);

    // Another organization's contacts are its own, and the same address may be one there.
    let globex = organization(&emulator, "Globex").await;
    let (_, empty) = send(
        &emulator,
        Method::GET,
        &format!("/organizations/{globex}/it_contacts"),
        None,
    )
    .await;
    assert_eq!(empty["data"], json!([]));
    contact(&emulator, &globex, "ada@acme.example").await;
}

#[tokio::test]
async fn contacts_are_refused_for_duplicates_bad_addresses_and_unknown_organizations() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme").await;
    let path = format!("/organizations/{acme}/it_contacts");
    contact(&emulator, &acme, "it@acme.example").await;

    let (status, body) = send(
        &emulator,
        Method::POST,
        &path,
        Some(json!({"email": "IT@ACME.example"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "it_contact_already_exists");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));

    for bad in [
        json!({}),
        json!({"email": null}),
        json!({"email": ""}),
        json!({"email": 7}),
        json!({"email": "not an address"}),
        json!({"email": "it@localhost"}),
        json!({"email": format!("{}@acme.example", "a".repeat(250))}),
    ] {
        let (status, body) = send(&emulator, Method::POST, &path, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(named_fields(&body), ["email"], "{bad}");
    }
    let (status, body) = send(
        &emulator,
        Method::POST,
        &path,
        Some(json!({"email": "new@acme.example", "role": "admin"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(named_fields(&body), ["role"]);
    let (status, body) = send(&emulator, Method::GET, &format!("{path}?limit=0"), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(named_fields(&body), ["limit"]);

    let unknown = "org_01AAAAAAAAAAAAAAAAAAAAAAAA";
    let unknown_path = format!("/organizations/{unknown}/it_contacts");
    for (method, body) in [
        (Method::GET, None),
        (Method::POST, Some(json!({"email": "it@acme.example"}))),
    ] {
        let (status, answer) = send(&emulator, method.clone(), &unknown_path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(answer["code"], "entity_not_found");
        assert_eq!(answer["entity_id"], unknown);
    }
    let (_, list) = send(&emulator, Method::GET, &path, None).await;
    assert_eq!(
        list["data"].as_array().map(Vec::len),
        Some(1),
        "nothing added"
    );
}

#[tokio::test]
async fn an_organization_has_one_active_invitation_at_a_time() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme").await;
    let ada = contact(&emulator, &acme, "ada@acme.example").await;
    let bob = contact(&emulator, &acme, "bob@acme.example").await;

    let response = emulator
        .api(
            Method::POST,
            &format!("/organizations/{acme}/it_contacts/{ada}/invite"),
        )
        .json(&json!({"intents": ["sso"]}))
        .send()
        .await
        .expect("invite");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.headers().get("x-request-id").is_some());
    assert_eq!(response.text().await.expect("body"), "", "no body");

    for someone in [&ada, &bob] {
        let (status, body) = invite(&emulator, &acme, someone, json!(["directory_sync"])).await;
        assert_eq!(status, StatusCode::CONFLICT, "{someone}");
        assert_eq!(body["code"], "it_contact_invitation_already_active");
        assert!(body["message"].as_str().is_some_and(|m| m.contains(&acme)));
    }
    // Another organization's invitation is its own.
    let globex = organization(&emulator, "Globex").await;
    let cy = contact(&emulator, &globex, "cy@globex.example").await;
    assert_eq!(
        invite(&emulator, &globex, &cy, json!(["sso"])).await.0,
        StatusCode::NO_CONTENT
    );

    // Only the invitee's revoke finds it.
    let (status, body) = revoke(&emulator, &acme, &bob).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "entity_not_found");
    assert_eq!(body["entity_id"], bob.as_str());
    let (status, body) = revoke(&emulator, &acme, &ada).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(
        revoke(&emulator, &acme, &ada).await.0,
        StatusCode::NOT_FOUND,
        "nothing left to revoke"
    );

    // Revoked, the organization may be invited again, by anyone.
    assert_eq!(
        invite(&emulator, &acme, &bob, json!(["log_streams"]))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        invite(&emulator, &acme, &ada, json!(["sso"])).await.0,
        StatusCode::CONFLICT
    );
    // The SDKs send revoke with no body at all.
    let response = emulator
        .api(
            Method::POST,
            &format!("/organizations/{acme}/it_contacts/{bob}/revoke"),
        )
        .send()
        .await
        .expect("revoke");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        invite(&emulator, &acme, &ada, json!(["sso"])).await.0,
        StatusCode::NO_CONTENT
    );
    let outbox = emulator.control(Method::GET, "/outbox", None).await;
    let sent: Vec<(&str, bool)> = outbox["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["organization_id"] == acme.as_str())
        .map(|m| (m["to"].as_str().expect("to"), m["revoked"] == true))
        .collect();
    assert_eq!(
        sent,
        [
            ("ada@acme.example", true),
            ("bob@acme.example", true),
            ("ada@acme.example", false)
        ]
    );
}

#[tokio::test]
async fn invitations_are_refused_for_bad_intents_and_unknown_contacts() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme").await;
    let ada = contact(&emulator, &acme, "ada@acme.example").await;
    let path = format!("/organizations/{acme}/it_contacts/{ada}/invite");
    for bad in [
        json!({}),
        json!({"intents": null}),
        json!({"intents": []}),
        json!({"intents": "sso"}),
        json!({"intents": ["dsync"]}),
        json!({"intents": ["audit_logs"]}),
        json!({"intents": ["certificate_renewal"]}),
        json!({"intents": ["sso", 7]}),
        json!({"intents": ["sso", "payroll"]}),
    ] {
        let (status, body) = send(&emulator, Method::POST, &path, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(named_fields(&body), ["intents"], "{bad}");
    }
    let (status, body) = send(
        &emulator,
        Method::POST,
        &path,
        Some(json!({"intents": ["sso"], "return_url": "https://app.example"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(named_fields(&body), ["return_url"]);
    let (status, body) = send(
        &emulator,
        Method::POST,
        &format!("/organizations/{acme}/it_contacts/{ada}/revoke"),
        Some(json!({"intents": ["sso"]})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(named_fields(&body), ["intents"]);

    let globex = organization(&emulator, "Globex").await;
    let theirs = contact(&emulator, &globex, "it@globex.example").await;
    let unknown_org = "org_01AAAAAAAAAAAAAAAAAAAAAAAA";
    let unknown_contact = "it_contact_01AAAAAAAAAAAAAAAAAAAAAAAA";
    for (org, id, entity) in [
        (unknown_org, ada.as_str(), unknown_org),
        (acme.as_str(), unknown_contact, unknown_contact),
        (acme.as_str(), theirs.as_str(), theirs.as_str()),
    ] {
        let (status, body) = invite(&emulator, org, id, json!(["sso"])).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "invite {org} {id}");
        assert_eq!(body["entity_id"], entity);
        let (status, body) = revoke(&emulator, org, id).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "revoke {org} {id}");
        assert_eq!(body["entity_id"], entity);
        let (status, body) = send(
            &emulator,
            Method::DELETE,
            &format!("/organizations/{org}/it_contacts/{id}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "delete {org} {id}");
        assert_eq!(body["code"], "entity_not_found");
    }
    let outbox = emulator.control(Method::GET, "/outbox", None).await;
    assert_eq!(outbox["messages"], json!([]), "nothing was sent");
}

#[tokio::test]
async fn deleting_a_contact_revokes_its_invitation_and_its_links() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme").await;
    let ada = contact(&emulator, &acme, "ada@acme.example").await;
    let bob = contact(&emulator, &acme, "bob@acme.example").await;
    // An earlier invitation, revoked, and the active one: both links are Ada's.
    invite(&emulator, &acme, &ada, json!(["sso"])).await;
    revoke(&emulator, &acme, &ada).await;
    invite(&emulator, &acme, &ada, json!(["domain_verification"])).await;
    let outbox = emulator.control(Method::GET, "/outbox", None).await;
    let links: Vec<String> = outbox["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["link"].as_str().expect("link").to_owned())
        .collect();
    assert_eq!(links.len(), 2);
    let browser = reqwest::Client::new();
    let opened = browser.get(&links[1]).send().await.expect("open");
    assert_eq!(opened.status(), StatusCode::OK);

    let response = emulator
        .api(
            Method::DELETE,
            &format!("/organizations/{acme}/it_contacts/{ada}"),
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.text().await.expect("body"), "");

    for link in &links {
        let opened = browser.get(link).send().await.expect("open");
        assert_eq!(opened.status(), StatusCode::GONE, "{link}");
        assert!(opened.text().await.expect("page").contains("revoked"));
    }
    let outbox = emulator.control(Method::GET, "/outbox", None).await;
    assert!(
        outbox["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .all(|m| m["revoked"] == true && m["contact_id"] == ada.as_str()),
        "{outbox}"
    );
    let (_, list) = send(
        &emulator,
        Method::GET,
        &format!("/organizations/{acme}/it_contacts"),
        None,
    )
    .await;
    assert_eq!(ids(&list), [bob.as_str()]);
    assert_eq!(
        send(
            &emulator,
            Method::DELETE,
            &format!("/organizations/{acme}/it_contacts/{ada}"),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        invite(&emulator, &acme, &ada, json!(["sso"])).await.0,
        StatusCode::NOT_FOUND
    );
    // The removed contact's invitation no longer holds the organization's place.
    assert_eq!(
        invite(&emulator, &acme, &bob, json!(["sso"])).await.0,
        StatusCode::NO_CONTENT
    );
    // The address may be added again, as a new contact.
    let again = contact(&emulator, &acme, "ada@acme.example").await;
    assert_ne!(again, ada);
}

#[tokio::test]
async fn the_routes_are_counted_faulted_keyed_and_replayed() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme").await;
    let unauthorized = emulator
        .http
        .get(format!("{}/organizations/{acme}/it_contacts", emulator.url))
        .send()
        .await
        .expect("no key");
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);

    let create = "POST /organizations/{id}/it_contacts";
    emulator
        .fault(json!({"route": create, "status": 503, "count": 1}))
        .await;
    let path = format!("/organizations/{acme}/it_contacts");
    let body = json!({"email": "ada@acme.example"});
    let (status, _) = send(&emulator, Method::POST, &path, Some(body.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let ada = contact(&emulator, &acme, "ada@acme.example").await;
    assert_eq!(emulator.count(create).await, 2);

    // With replay switched on, an invitation that committed but whose answer was lost: the
    // retry with the same key replays the answer instead of meeting its own invitation as a
    // conflict.
    emulator
        .control(Method::POST, "/idempotency", Some(json!({"replay": true})))
        .await;
    let route = "POST /organizations/{id}/it_contacts/{contact_id}/invite";
    emulator
        .fault(json!({"route": route, "status": 502, "count": 1, "after_commit": true}))
        .await;
    let path = format!("/organizations/{acme}/it_contacts/{ada}/invite");
    let keyed = |body: Value| {
        emulator
            .api(Method::POST, &path)
            .header("idempotency-key", "invite-1")
            .json(&body)
    };
    let first = keyed(json!({"intents": ["sso"]}))
        .send()
        .await
        .expect("first");
    assert_eq!(first.status(), StatusCode::BAD_GATEWAY);
    let retry = keyed(json!({"intents": ["sso"]}))
        .send()
        .await
        .expect("retry");
    assert_eq!(retry.status(), StatusCode::NO_CONTENT);
    assert_eq!(retry.text().await.expect("body"), "");
    let other = keyed(json!({"intents": ["log_streams"]}))
        .send()
        .await
        .expect("other body");
    assert_eq!(other.status(), StatusCode::BAD_REQUEST);
    assert_eq!(emulator.count(route).await, 3);
    let outbox = emulator.control(Method::GET, "/outbox", None).await;
    assert_eq!(outbox["messages"].as_array().map(Vec::len), Some(1));

    emulator.control(Method::DELETE, "/requests", None).await;
    for (route, method, path) in [
        (
            "GET /organizations/{id}/it_contacts",
            Method::GET,
            format!("/organizations/{acme}/it_contacts"),
        ),
        (
            "POST /organizations/{id}/it_contacts/{contact_id}/revoke",
            Method::POST,
            format!("/organizations/{acme}/it_contacts/{ada}/revoke"),
        ),
        (
            "DELETE /organizations/{id}/it_contacts/{contact_id}",
            Method::DELETE,
            format!("/organizations/{acme}/it_contacts/{ada}"),
        ),
    ] {
        emulator
            .fault(json!({"route": route, "status": 429, "retry_after": 3, "count": 1}))
            .await;
        let response = emulator.api(method, &path).send().await.expect("faulted");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{route}");
        assert_eq!(response.headers()["retry-after"], "3");
        assert_eq!(emulator.count(route).await, 1, "{route}");
    }
}
