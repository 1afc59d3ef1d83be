//! What operators see: the Prometheus series after a scripted mix of calls, `/healthz`, and the
//! request ids returned to callers and sent to WorkOS.

use std::time::Duration;

use portal_gateway::proto::{self, Intent};
use reqwest::Method;
use serde_json::json;
use tonic::Request;

use crate::helpers::{
    Credentials, TestEmulator, base_config, config_with_tokens, spawn_app_with_admin,
};

/// The value of one series in a Prometheus text exposition, if present.
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name_and_labels)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

#[tokio::test]
async fn metrics_count_a_scripted_mix_of_calls() {
    let emulator = TestEmulator::start().await;
    let config = config_with_tokens(&emulator.url, &[("stranger", "stranger-token")])
        .replace("drain_delay = \"0s\"", "drain_delay = \"2s\"");
    let (mut app, admin) = spawn_app_with_admin(emulator, &config).await;
    let http = reqwest::Client::new();
    let scrape = || {
        let http = http.clone();
        async move {
            http.get(format!("http://{admin}/metrics"))
                .send()
                .await
                .expect("scrape")
                .text()
                .await
                .expect("text")
        }
    };

    // The mix: an org, two links by external id (one lookup, then the cache), a read that is
    // retried once after a 503, an unauthenticated call and one from an identity no rule names.
    let created = app
        .orgs
        .clone()
        .create_organization(proto::CreateOrganizationRequest {
            name: "Acme".into(),
            external_id: "acme".into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
        .organization
        .expect("org");
    for _ in 0..2 {
        let request = proto::GenerateLinkRequest {
            organization: Some(proto::generate_link_request::Organization::ExternalId(
                "acme".into(),
            )),
            intent: Intent::Sso as i32,
            ..Default::default()
        };
        app.portal
            .clone()
            .generate_link(request)
            .await
            .expect("link");
    }
    app.emulator
        .fault(json!({"route": "GET /organizations", "status": 503, "count": 1}))
        .await;
    app.orgs
        .clone()
        .list_organizations(proto::ListOrganizationsRequest::default())
        .await
        .expect("list after a retry");
    let anonymous = app.clients(Credentials::default());
    anonymous
        .portal
        .clone()
        .list_intents(proto::ListIntentsRequest {})
        .await
        .expect_err("unauthenticated");
    app.as_token("stranger-token")
        .portal
        .list_intents(proto::ListIntentsRequest {})
        .await
        .expect_err("no rule");

    let text = scrape().await;
    let expect = |series_name: &str, value: f64| {
        assert_eq!(
            series(&text, series_name),
            Some(value),
            "{series_name} in\n{text}"
        );
    };
    expect(
        r#"portal_gateway_rpc_requests_total{method="CreateOrganization",caller="token:admin",code="OK"}"#,
        1.0,
    );
    expect(
        r#"portal_gateway_rpc_requests_total{method="GenerateLink",caller="token:admin",code="OK"}"#,
        2.0,
    );
    expect(
        r#"portal_gateway_rpc_requests_total{method="ListOrganizations",caller="token:admin",code="OK"}"#,
        1.0,
    );
    expect(
        r#"portal_gateway_rpc_requests_total{method="ListIntents",caller="unauthenticated",code="UNAUTHENTICATED"}"#,
        1.0,
    );
    expect(
        r#"portal_gateway_rpc_requests_total{method="ListIntents",caller="unknown",code="PERMISSION_DENIED"}"#,
        1.0,
    );
    expect(
        r#"portal_gateway_rpc_duration_seconds_count{method="GenerateLink",caller="token:admin"}"#,
        2.0,
    );
    expect(
        r#"portal_gateway_upstream_requests_total{route="POST /portal/generate_link",status="201"}"#,
        2.0,
    );
    expect(
        r#"portal_gateway_upstream_requests_total{route="POST /organizations",status="201"}"#,
        1.0,
    );
    expect(
        r#"portal_gateway_upstream_requests_total{route="GET /organizations",status="503"}"#,
        1.0,
    );
    expect(
        r#"portal_gateway_upstream_requests_total{route="GET /organizations",status="200"}"#,
        1.0,
    );
    expect(
        r#"portal_gateway_upstream_retries_total{route="GET /organizations"}"#,
        1.0,
    );
    // The create warmed the cache, so both links found "acme" there.
    expect(r#"portal_gateway_cache_lookups_total{result="hit"}"#, 2.0);
    expect(
        r#"portal_gateway_breaker_state{family="organizations"}"#,
        0.0,
    );
    expect("portal_gateway_in_flight_requests", 0.0);
    assert!(
        !text.contains("stranger"),
        "callers outside the policy collapse into one label"
    );
    assert!(!text.contains(&created.id), "no organization ids in labels");

    let healthz = http
        .get(format!("http://{admin}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(healthz.status(), 200);
    app.signal_shutdown();
    let mut draining = false;
    for _ in 0..200 {
        let answer = http
            .get(format!("http://{admin}/healthz"))
            .send()
            .await
            .expect("healthz while draining");
        if answer.status() == 503 {
            draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(draining, "/healthz turns 503 during the drain delay");
}

#[tokio::test]
async fn request_ids_and_trace_context_round_trip() {
    let emulator = TestEmulator::start().await;
    let config = base_config(&emulator.url);
    let (app, _) = spawn_app_with_admin(emulator, &config).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut request = Request::new(proto::EnsureOrganizationRequest {
        external_id: "acme".into(),
        name: "Acme".into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-request-id", "req-roundtrip-1".parse().expect("ascii"));
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().expect("ascii"));
    let response = app
        .orgs
        .clone()
        .ensure_organization(request)
        .await
        .expect("ensure");
    let metadata = response.metadata();
    assert_eq!(
        metadata.get("x-request-id").and_then(|v| v.to_str().ok()),
        Some("req-roundtrip-1")
    );
    let workos_id = metadata
        .get("x-workos-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("WorkOS request id")
        .to_owned();
    assert_eq!(workos_id.len(), 36, "{workos_id}");
    let recent = app.emulator.control(Method::GET, "/requests", None).await;
    let sent: Vec<&serde_json::Value> = recent["recent"]
        .as_array()
        .expect("recent")
        .iter()
        .collect();
    assert!(!sent.is_empty());
    for upstream in &sent {
        assert_eq!(upstream["request_id"], "req-roundtrip-1", "{upstream}");
        assert_eq!(upstream["traceparent"], traceparent, "{upstream}");
    }
    // Errors carry the ids too; a generated id when the caller sends none.
    let status = app
        .orgs
        .clone()
        .get_organization(proto::GetOrganizationRequest {
            organization: Some(proto::get_organization_request::Organization::Id(
                "org_01EHWNCE74X7JSDV0X3SZ3KJNY".into(),
            )),
        })
        .await
        .expect_err("not found");
    let generated = status
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("request id on errors");
    assert_eq!(generated.len(), 36);
    assert!(status.metadata().get("x-workos-request-id").is_some());
    // A malformed traceparent is not forwarded.
    let mut request = Request::new(proto::ListIntentsRequest {});
    request
        .metadata_mut()
        .insert("traceparent", "00-zz-yy-01".parse().expect("ascii"));
    app.portal
        .clone()
        .list_intents(request)
        .await
        .expect("intents");
}
