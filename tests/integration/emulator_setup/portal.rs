//! The portal's forms through HTTP, as a browser submits them: each intent's flow, its
//! refusals, where it sends the admin, and that every submission checks the link again.

use reqwest::{Method, StatusCode, redirect::Policy};
use serde_json::{Value, json};

use super::{call, organization, setup};
use crate::helpers::TestEmulator;

/// A browser that does not follow redirects, so a test can see where it is sent.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// Mints a link with `body` (the organization added) and returns it with its secret.
async fn mint(emulator: &TestEmulator, organization_id: &str, mut body: Value) -> (String, String) {
    body["organization"] = json!(organization_id);
    let (status, answer) = {
        let response = emulator
            .api(Method::POST, "/portal/generate_link")
            .json(&body)
            .send()
            .await
            .expect("generate_link");
        (
            response.status(),
            response.json::<Value>().await.expect("json"),
        )
    };
    assert_eq!(status, StatusCode::CREATED, "{body}: {answer}");
    let link = answer["link"].as_str().expect("link").to_owned();
    let secret = link.split("secret=").nth(1).expect("a secret").to_owned();
    (link, secret)
}

async fn open(url: &str) -> (StatusCode, String) {
    let response = browser().get(url).send().await.expect("open");
    (response.status(), response.text().await.expect("page"))
}

/// Submits a form: the status, the `Location` it redirects to, and the page.
async fn submit(
    emulator: &TestEmulator,
    path: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String, String) {
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
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, location, response.text().await.expect("page"))
}

/// The `value` of the hidden input named `name`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} in {html}"))
        + marker.len();
    html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn event_names(emulator: &TestEmulator, organization_id: &str) -> Vec<String> {
    let query = format!(
        "/events?events=connection.activated,connection.saml_certificate_renewed,dsync.activated,\
         organization_domain.created,organization_domain.verified,vault.byok_key.verification_completed\
         &organization_id={organization_id}&limit=100"
    );
    let (_, list) = call(emulator, Method::GET, &query).await;
    list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["event"].as_str().expect("event").to_owned())
        .collect()
}

#[tokio::test]
async fn a_link_without_an_intent_opens_a_menu_of_every_flow() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme", &[]).await;
    let (link, secret) = mint(
        &emulator,
        &acme,
        json!({"success_url": "https://app.example/done"}),
    )
    .await;
    let (status, html) = open(&link).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"intents\""), "{html}");
    for intent in [
        "sso",
        "dsync",
        "audit_logs",
        "log_streams",
        "domain_verification",
        "certificate_renewal",
        "bring_your_own_key",
    ] {
        let href = format!("href=\"/portal/launch?secret={secret}&amp;intent={intent}\"");
        assert!(
            html.contains(&format!("id=\"intent-{intent}\" {href}")),
            "{intent} in {html}"
        );
    }
    for marker in [
        "id=\"organization\"",
        "id=\"intent\"",
        "id=\"return\"",
        "id=\"success\"",
    ] {
        assert!(html.contains(marker), "{marker}");
    }
    let (status, flow) = open(&format!(
        "{}/portal/launch?secret={secret}&intent=dsync",
        emulator.url
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        flow.contains("<strong id=\"intent\">dsync</strong>") && flow.contains("id=\"dsync-form\"")
    );
    assert!(flow.contains("id=\"menu\""), "a way back to the menu");
    let (status, location, _) = submit(
        &emulator,
        "/portal/dsync",
        &[("secret", &secret), ("provider", "gsuite directory")],
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "https://app.example/done")
    );
}

#[tokio::test]
async fn the_sso_flow_configures_then_tests_a_connection() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme", &["acme.example"]).await;
    let (link, secret) = mint(&emulator, &acme, json!({"intent": "sso", "return_url": "https://app.example/back", "success_url": "https://app.example/done"})).await;
    let (_, html) = open(&link).await;
    for id in ["sso-form", "provider", "metadata-url", "submit"] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id} in {html}");
    }
    for provider in ["OktaSAML", "AzureSAML", "GoogleSAML", "GenericSAML"] {
        assert!(
            html.contains(&format!("<option value=\"{provider}\"")),
            "{provider}"
        );
    }
    assert!(!html.contains("test-sign-in"));
    for (provider, url) in [
        ("OktaSAML", "not a url"),
        ("OktaSAML", "ftp://idp.example/meta"),
        ("Carrier", "https://idp.example/meta"),
    ] {
        let (status, _, page) = submit(
            &emulator,
            "/portal/sso",
            &[
                ("secret", &secret),
                ("provider", provider),
                ("metadata_url", url),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{provider} {url}");
        assert!(
            page.contains("id=\"error\"") && page.contains("id=\"sso-form\""),
            "{page}"
        );
    }
    let (status, location, _) = submit(
        &emulator,
        "/portal/sso",
        &[
            ("secret", &secret),
            ("provider", "AzureSAML"),
            ("metadata_url", "https://idp.example/meta"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location,
        format!("/portal/launch?secret={secret}&intent=sso")
    );
    let (_, list) = call(
        &emulator,
        Method::GET,
        &format!("/connections?organization_id={acme}"),
    )
    .await;
    assert_eq!(list["data"][0]["state"], "validating");
    assert_eq!(list["data"][0]["connection_type"], "AzureSAML");
    let (_, page) = open(&format!("{}{location}", emulator.url)).await;
    assert!(page.contains("id=\"test-sign-in\""), "{page}");
    let connection_id = hidden(&page, "connection_id");
    assert_eq!(list["data"][0]["id"], connection_id.as_str());
    let (status, location, _) = submit(
        &emulator,
        "/portal/sso/test",
        &[("secret", &secret), ("connection_id", &connection_id)],
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "https://app.example/done")
    );
    let (_, connection) = call(
        &emulator,
        Method::GET,
        &format!("/connections/{connection_id}"),
    )
    .await;
    assert_eq!(connection["state"], "active");
    assert_eq!(
        event_names(&emulator, &acme).await,
        ["organization_domain.created", "connection.activated"]
    );
}

#[tokio::test]
async fn the_dsync_domain_and_key_flows_finish_where_the_link_says() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme", &["acme.example"]).await;
    // Without a success URL the admin goes back to the return URL, else to the exit page.
    let (_, dsync) = mint(
        &emulator,
        &acme,
        json!({"intent": "dsync", "return_url": "https://app.example/back"}),
    )
    .await;
    let (status, _, _) = submit(
        &emulator,
        "/portal/dsync",
        &[("secret", &dsync), ("provider", "ldap")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, location, _) = submit(
        &emulator,
        "/portal/dsync",
        &[("secret", &dsync), ("provider", "okta scim v2.0")],
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "https://app.example/back")
    );
    let (_, directories) = call(
        &emulator,
        Method::GET,
        &format!("/directories?organization_id={acme}"),
    )
    .await;
    assert_eq!(
        (
            directories["data"][0]["state"].as_str(),
            directories["data"][0]["type"].as_str()
        ),
        (Some("linked"), Some("okta scim v2.0"))
    );

    let (link, domains) = mint(&emulator, &acme, json!({"intent": "domain_verification"})).await;
    let (_, org) = call(&emulator, Method::GET, &format!("/organizations/{acme}")).await;
    let domain = &org["domains"][0];
    let (_, page) = open(&link).await;
    let record = format!(
        "{}.acme.example",
        domain["verification_prefix"].as_str().expect("prefix")
    );
    assert!(
        page.contains(&record)
            && page.contains(domain["verification_token"].as_str().expect("token")),
        "{page}"
    );
    assert!(page.contains("id=\"verify-acme.example\"") && page.contains("id=\"domain-form\""));
    let (status, _, _) = submit(
        &emulator,
        "/portal/domain_verification",
        &[("secret", &domains), ("domain", "not a domain")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, _) = submit(
        &emulator,
        "/portal/domain_verification",
        &[("secret", &domains), ("domain", "acme.example")],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "a domain is added once");
    let (status, location, _) = submit(
        &emulator,
        "/portal/domain_verification",
        &[("secret", &domains), ("domain", "New.Example")],
    )
    .await;
    assert_eq!(
        (status, location),
        (
            StatusCode::SEE_OTHER,
            format!("/portal/launch?secret={domains}&intent=domain_verification")
        )
    );
    let (_, page) = open(&link).await;
    assert!(page.contains("id=\"verify-new.example\""), "{page}");
    let (status, location, _) = submit(
        &emulator,
        "/portal/domain_verification/verify",
        &[("secret", &domains), ("domain", "new.example")],
    )
    .await;
    assert_eq!(
        (status, location),
        (
            StatusCode::SEE_OTHER,
            format!("{}/portal/exit", emulator.url)
        )
    );
    let (_, page) = open(&link).await;
    assert!(
        !page.contains("id=\"verify-new.example\""),
        "verified domains have no button"
    );

    let (_, key) = mint(&emulator, &acme, json!({"intent": "bring_your_own_key"})).await;
    let (status, _, _) = submit(
        &emulator,
        "/portal/bring_your_own_key",
        &[("secret", &key), ("key_provider", "GCP_KMS")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        event_names(&emulator, &acme).await,
        [
            "organization_domain.created",
            "dsync.activated",
            "organization_domain.created",
            "organization_domain.verified",
            "vault.byok_key.verification_completed",
        ]
    );
}

#[tokio::test]
async fn audit_log_stream_and_certificate_pages_change_what_the_api_shows() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme", &[]).await;
    let config_path = format!("/organizations/{acme}/audit_log_configuration");
    assert_eq!(
        call(&emulator, Method::GET, &config_path).await.0,
        StatusCode::NOT_FOUND
    );
    let (link, _) = mint(&emulator, &acme, json!({"intent": "audit_logs"})).await;
    let (status, page) = open(&link).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("id=\"audit-state\"") && page.contains("id=\"success\""),
        "{page}"
    );
    let (_, config) = call(&emulator, Method::GET, &config_path).await;
    assert_eq!(
        config["state"], "active",
        "opening the viewer turns audit logs on"
    );

    let (_, streams) = mint(&emulator, &acme, json!({"intent": "log_streams"})).await;
    let (status, _, _) = submit(
        &emulator,
        "/portal/log_streams",
        &[("secret", &streams), ("destination", "Fax")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, _) = submit(
        &emulator,
        "/portal/log_streams",
        &[("secret", &streams), ("destination", "GenericHttps")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, config) = call(&emulator, Method::GET, &config_path).await;
    assert_eq!(
        (
            config["log_stream"]["type"].as_str(),
            config["log_stream"]["state"].as_str()
        ),
        (Some("GenericHttps"), Some("active"))
    );

    let (link, renewal) = mint(&emulator, &acme, json!({"intent": "certificate_renewal"})).await;
    let (_, page) = open(&link).await;
    assert!(
        page.contains("id=\"no-connection\"") && !page.contains("id=\"renew\""),
        "{page}"
    );
    let (status, _, page) = submit(
        &emulator,
        "/portal/certificate_renewal",
        &[("secret", &renewal)],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains("id=\"error\""));
    setup(
        &emulator,
        &acme,
        json!({"intent": "sso", "action": "activate", "provider": "OktaSAML"}),
    )
    .await;
    let (_, page) = open(&link).await;
    assert!(page.contains("id=\"renew\""), "{page}");
    let (status, _, _) = submit(
        &emulator,
        "/portal/certificate_renewal",
        &[("secret", &renewal)],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        event_names(&emulator, &acme).await,
        [
            "connection.activated",
            "connection.saml_certificate_renewed"
        ]
    );
}

#[tokio::test]
async fn every_form_checks_the_link_again() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme", &[]).await;
    let sso_form = |secret: &str| {
        vec![
            ("secret".to_owned(), secret.to_owned()),
            ("provider".to_owned(), "OktaSAML".to_owned()),
            (
                "metadata_url".to_owned(),
                "https://idp.example/meta".to_owned(),
            ),
        ]
    };
    let post = |fields: Vec<(String, String)>, path: &'static str| {
        let emulator = &emulator;
        async move {
            let pairs: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            submit(emulator, path, &pairs).await
        }
    };
    let (status, _, page) = post(sso_form("nonsense"), "/portal/sso").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{page}");
    let (_, dsync) = mint(&emulator, &acme, json!({"intent": "dsync"})).await;
    let (status, _, _) = post(sso_form(&dsync), "/portal/sso").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a dsync link cannot set up SSO"
    );

    let (_, revoked) = mint(
        &emulator,
        &acme,
        json!({"intent": "sso", "external_user_id": "u1"}),
    )
    .await;
    let (_, kept) = mint(
        &emulator,
        &acme,
        json!({"intent": "sso", "external_user_id": "u2"}),
    )
    .await;
    let (status, _) = call(&emulator, Method::POST, "/portal/revoke_link").await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "revoke needs a body"
    );
    let response = emulator
        .api(Method::POST, "/portal/revoke_link")
        .json(&json!({"organization": acme, "external_user_id": "u1"}))
        .send()
        .await
        .expect("revoke");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, _, page) = post(sso_form(&revoked), "/portal/sso").await;
    assert_eq!(status, StatusCode::GONE);
    assert!(page.contains("revoked"));
    let (status, _, page) = post(
        vec![
            ("secret".into(), revoked.clone()),
            ("connection_id".into(), "conn_x".into()),
        ],
        "/portal/sso/test",
    )
    .await;
    assert_eq!(status, StatusCode::GONE, "{page}");

    emulator
        .control(
            Method::POST,
            "/clock",
            Some(json!({"advance_seconds": 300})),
        )
        .await;
    for (path, fields) in [
        ("/portal/sso", sso_form(&kept)),
        (
            "/portal/bring_your_own_key",
            vec![
                ("secret".into(), kept.clone()),
                ("key_provider".into(), "AWS_KMS".into()),
            ],
        ),
    ] {
        let (status, _, page) = post(fields, path).await;
        assert_eq!(status, StatusCode::GONE, "{path}");
        assert!(page.contains("expired"), "{page}");
    }
    let (_, connections) = call(
        &emulator,
        Method::GET,
        &format!("/connections?organization_id={acme}"),
    )
    .await;
    assert_eq!(
        connections["data"],
        json!([]),
        "no refused form changed anything"
    );
    assert_eq!(event_names(&emulator, &acme).await, Vec::<String>::new());
}
