//! What an invitation sends: the outbox's messages, the link each carries opening the portal's
//! stand-in for its intents, and the link refusing once revoked or expired; and what clearing
//! the outbox, deleting an organization and resetting forget.

use reqwest::{Method, StatusCode, redirect::Policy};
use serde_json::{Value, json};

use super::{contact, invite, organization, revoke, send};
use crate::helpers::TestEmulator;

/// A browser that does not follow redirects, so a test can see where it is sent.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

async fn open(url: &str) -> (StatusCode, String) {
    let response = browser().get(url).send().await.expect("open");
    (response.status(), response.text().await.expect("page"))
}

/// The outbox's messages.
async fn outbox(emulator: &TestEmulator) -> Vec<Value> {
    let outbox = emulator.control(Method::GET, "/outbox", None).await;
    outbox["messages"].as_array().expect("messages").clone()
}

fn secret_of(link: &str) -> String {
    link.split("secret=").nth(1).expect("a secret").to_owned()
}

/// Submits a portal form: the status and where it sends the browser.
async fn submit(
    emulator: &TestEmulator,
    path: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let response = browser()
        .post(format!("{}{path}", emulator.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("submit");
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.status(), location)
}

#[tokio::test]
async fn an_invitation_is_a_message_whose_link_opens_the_portal_until_revoked() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme & Co").await;
    let ada = contact(&emulator, &acme, "Ada@acme.example").await;
    assert!(
        outbox(&emulator).await.is_empty(),
        "adding a contact sends nothing"
    );
    invite(&emulator, &acme, &ada, json!(["directory_sync"])).await;

    let messages = outbox(&emulator).await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    let mut keys: Vec<&str> = message
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "contact_id",
            "expires_at",
            "intents",
            "link",
            "organization_id",
            "revoked",
            "sent_at",
            "subject",
            "to"
        ]
    );
    assert_eq!(message["to"], "Ada@acme.example");
    assert_eq!(
        message["intents"],
        json!(["directory_sync"]),
        "the API's names"
    );
    assert_eq!(message["organization_id"], acme.as_str());
    assert_eq!(message["contact_id"], ada.as_str());
    assert_eq!(message["revoked"], false);
    assert!(
        message["subject"]
            .as_str()
            .expect("subject")
            .contains("Acme & Co")
    );
    let sent_at = humantime::parse_rfc3339(message["sent_at"].as_str().expect("sent_at"))
        .expect("a timestamp");
    let expires_at = humantime::parse_rfc3339(message["expires_at"].as_str().expect("expires_at"))
        .expect("a timestamp");
    assert_eq!(
        expires_at.duration_since(sent_at).expect("later").as_secs(),
        7 * 24 * 60 * 60,
        "invitation links work for seven days"
    );
    let link = message["link"].as_str().expect("link");
    assert!(
        link.starts_with(&format!("{}/portal/launch?secret=", emulator.url)),
        "{link}"
    );

    // `directory_sync` opens the portal's `dsync` flow, which works like any link's.
    let (status, html) = open(link).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"intent\">dsync<"), "{html}");
    assert!(html.contains("Acme &amp; Co"), "{html}");
    assert!(html.contains("id=\"dsync-form\""), "{html}");
    let secret = secret_of(link);
    let (status, location) = submit(
        &emulator,
        "/portal/dsync",
        &[("secret", &secret), ("provider", "okta scim v2.0")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location,
        format!("{}/portal/exit", emulator.url),
        "no success URL"
    );
    let (_, directories) = send(
        &emulator,
        Method::GET,
        &format!("/directories?organization_id={acme}"),
        None,
    )
    .await;
    assert_eq!(directories["data"][0]["state"], "linked");
    // Only the invited intent.
    let (status, _) = submit(
        &emulator,
        "/portal/log_streams",
        &[("secret", &secret), ("destination", "Datadog")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    revoke(&emulator, &acme, &ada).await;
    let (status, html) = open(link).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("revoked"), "{html}");
    let (status, _) = submit(
        &emulator,
        "/portal/dsync",
        &[("secret", &secret), ("provider", "okta scim v2.0")],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::GONE,
        "a page left open stops working too"
    );
    assert_eq!(outbox(&emulator).await[0]["revoked"], true);
}

#[tokio::test]
async fn an_invitation_naming_several_intents_opens_a_menu_of_those() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme").await;
    let ada = contact(&emulator, &acme, "ada@acme.example").await;
    let intents = json!(["sso", "directory_sync", "bring_your_own_key", "sso"]);
    let (status, _) = invite(&emulator, &acme, &ada, intents).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let message = &outbox(&emulator).await[0];
    assert_eq!(
        message["intents"],
        json!(["sso", "directory_sync", "bring_your_own_key"]),
        "each once, in the order named"
    );
    let link = message["link"].as_str().expect("link");
    let (status, html) = open(link).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"intents\""), "{html}");
    for offered in ["sso", "dsync", "bring_your_own_key"] {
        assert!(
            html.contains(&format!("id=\"intent-{offered}\"")),
            "{offered}"
        );
    }
    for withheld in [
        "audit_logs",
        "log_streams",
        "domain_verification",
        "certificate_renewal",
    ] {
        assert!(
            !html.contains(&format!("id=\"intent-{withheld}\"")),
            "{withheld}"
        );
    }
    let (status, flow) = open(&format!("{link}&intent=bring_your_own_key")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(flow.contains("id=\"byok-form\""), "{flow}");
    let (_, withheld) = open(&format!("{link}&intent=log_streams")).await;
    assert!(
        withheld.contains("id=\"intents\"") && !withheld.contains("log-stream-form"),
        "an intent it was not invited for shows the menu: {withheld}"
    );
    let secret = secret_of(link);
    let (status, _) = submit(
        &emulator,
        "/portal/log_streams",
        &[("secret", &secret), ("destination", "Datadog")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, location) = submit(
        &emulator,
        "/portal/bring_your_own_key",
        &[("secret", &secret), ("key_provider", "AWS_KMS")],
    )
    .await;
    assert_eq!(
        (status, location.ends_with("/portal/exit")),
        (StatusCode::SEE_OTHER, true)
    );
}

#[tokio::test]
async fn invitation_links_work_for_seven_days() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme").await;
    let ada = contact(&emulator, &acme, "ada@acme.example").await;
    invite(&emulator, &acme, &ada, json!(["sso"])).await;
    let link = outbox(&emulator).await[0]["link"]
        .as_str()
        .expect("link")
        .to_owned();
    let advance = |seconds: u64| {
        emulator.control(
            Method::POST,
            "/clock",
            Some(json!({ "advance_seconds": seconds })),
        )
    };
    advance(7 * 24 * 60 * 60 - 60).await;
    assert_eq!(
        open(&link).await.0,
        StatusCode::OK,
        "long past five minutes"
    );
    assert_eq!(
        invite(&emulator, &acme, &ada, json!(["sso"])).await.0,
        StatusCode::CONFLICT,
        "still active"
    );
    advance(60).await;
    let (status, html) = open(&link).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(
        html.contains("expired") && html.contains("7 days"),
        "{html}"
    );
    assert_eq!(
        outbox(&emulator).await[0]["revoked"],
        false,
        "expired, not revoked"
    );

    // An expired invitation is no longer active: nothing to revoke, and room for a new one.
    assert_eq!(
        revoke(&emulator, &acme, &ada).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        invite(&emulator, &acme, &ada, json!(["sso"])).await.0,
        StatusCode::NO_CONTENT
    );
    let fresh = outbox(&emulator).await[1]["link"]
        .as_str()
        .expect("link")
        .to_owned();
    assert_eq!(open(&fresh).await.0, StatusCode::OK);
}

#[tokio::test]
async fn clearing_the_outbox_forgets_messages_not_invitations() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme").await;
    let ada = contact(&emulator, &acme, "ada@acme.example").await;
    invite(&emulator, &acme, &ada, json!(["sso"])).await;
    let link = outbox(&emulator).await[0]["link"]
        .as_str()
        .expect("link")
        .to_owned();
    let cleared = emulator.control(Method::DELETE, "/outbox", None).await;
    assert_eq!(cleared, json!({"messages": []}));
    assert!(outbox(&emulator).await.is_empty());
    assert_eq!(open(&link).await.0, StatusCode::OK);
    assert_eq!(
        invite(&emulator, &acme, &ada, json!(["sso"])).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        revoke(&emulator, &acme, &ada).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(open(&link).await.0, StatusCode::GONE);
}

#[tokio::test]
async fn deleting_an_organization_or_resetting_forgets_contacts_invitations_and_messages() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme").await;
    let globex = organization(&emulator, "Globex").await;
    let ada = contact(&emulator, &acme, "ada@acme.example").await;
    let cy = contact(&emulator, &globex, "cy@globex.example").await;
    invite(&emulator, &acme, &ada, json!(["sso"])).await;
    invite(&emulator, &globex, &cy, json!(["log_streams"])).await;
    let links: Vec<String> = outbox(&emulator)
        .await
        .iter()
        .map(|m| m["link"].as_str().expect("link").to_owned())
        .collect();

    let (status, _) = send(
        &emulator,
        Method::DELETE,
        &format!("/organizations/{acme}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let left = outbox(&emulator).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["organization_id"], globex.as_str());
    assert_eq!(
        open(&links[0]).await.0,
        StatusCode::NOT_FOUND,
        "the link is gone"
    );
    assert_eq!(
        open(&links[1]).await.0,
        StatusCode::OK,
        "others are untouched"
    );
    for path in [
        format!("/organizations/{acme}/it_contacts"),
        format!("/organizations/{acme}/it_contacts/{ada}"),
    ] {
        let method = if path.ends_with(&ada) {
            Method::DELETE
        } else {
            Method::GET
        };
        assert_eq!(
            send(&emulator, method, &path, None).await.0,
            StatusCode::NOT_FOUND
        );
    }

    // Reset forgets the rest; an organization seeded with the same id starts without contacts.
    emulator
        .control(Method::POST, "/reset", Some(json!({"seed": 3})))
        .await;
    assert!(outbox(&emulator).await.is_empty());
    assert_eq!(open(&links[1]).await.0, StatusCode::NOT_FOUND);
    emulator
        .control(
            Method::POST,
            "/seed",
            Some(json!({"organizations": [{"id": globex, "name": "Globex"}]})),
        )
        .await;
    let (status, list) = send(
        &emulator,
        Method::GET,
        &format!("/organizations/{globex}/it_contacts"),
        None,
    )
    .await;
    assert_eq!((status, list["data"].clone()), (StatusCode::OK, json!([])));
    assert_eq!(
        invite(&emulator, &globex, &cy, json!(["sso"])).await.0,
        StatusCode::NOT_FOUND
    );
}
