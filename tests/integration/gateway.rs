//! The gateway through its generated tonic clients, against the emulator: every RPC, the happy
//! path and each error class, and how upstream failures map to gRPC statuses.

use std::time::{Duration, SystemTime};

use portal_gateway::proto::{self, Intent};
use reqwest::Method;
use serde_json::json;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::helpers::{
    TestEmulator, bad_fields, base_config, details, reason, spawn_app, spawn_app_with,
    start_connect_proxy,
};

fn create(name: &str, external_id: &str) -> proto::CreateOrganizationRequest {
    proto::CreateOrganizationRequest {
        name: name.into(),
        external_id: external_id.into(),
        ..Default::default()
    }
}

fn by_id(id: &str) -> proto::GetOrganizationRequest {
    proto::GetOrganizationRequest {
        organization: Some(proto::get_organization_request::Organization::Id(id.into())),
    }
}

fn link_by_external(external_id: &str, intent: Intent) -> proto::GenerateLinkRequest {
    proto::GenerateLinkRequest {
        organization: Some(proto::generate_link_request::Organization::ExternalId(
            external_id.into(),
        )),
        intent: intent as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn health_is_serving_for_the_server_and_each_service() {
    let app = spawn_app().await;
    let mut health = app.health.clone();
    for service in [
        "",
        "adminportal.v1.OrganizationService",
        "adminportal.v1.PortalService",
        "adminportal.v1.AccessService",
    ] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.v1.Nothing".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(
        app.emulator.total_requests().await,
        0,
        "health never calls WorkOS"
    );
}

#[tokio::test]
async fn organizations_are_created_read_listed_updated_and_deleted() {
    let app = spawn_app().await;
    let mut orgs = app.orgs.clone();
    let created = orgs
        .create_organization(proto::CreateOrganizationRequest {
            name: "Acme".into(),
            external_id: "acme".into(),
            metadata: [("tier".to_owned(), "gold".to_owned())].into(),
            domains: vec![proto::OrganizationDomain {
                domain: "Acme.Example".into(),
                state: proto::DomainState::Verified as i32,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
        .organization
        .expect("organization");
    assert!(created.id.starts_with("org_"));
    assert_eq!(created.domains[0].domain, "acme.example");
    assert_eq!(created.domains[0].state(), proto::DomainState::Verified);
    assert_eq!(
        created.domains[0].verification_strategy(),
        proto::DomainVerificationStrategy::Manual
    );
    let create_time = created.create_time.expect("create_time");
    let age = SystemTime::now()
        .duration_since(SystemTime::try_from(create_time).expect("time"))
        .unwrap_or_default();
    assert!(age < Duration::from_secs(60));

    let fetched = orgs
        .get_organization(by_id(&created.id))
        .await
        .expect("get")
        .into_inner()
        .organization
        .expect("org");
    assert_eq!(fetched, created);
    let by_external = orgs
        .get_organization(proto::GetOrganizationRequest {
            organization: Some(proto::get_organization_request::Organization::ExternalId(
                "acme".into(),
            )),
        })
        .await
        .expect("get by external id")
        .into_inner()
        .organization
        .expect("org");
    assert_eq!(by_external.id, created.id);

    let updated = orgs
        .update_organization(proto::UpdateOrganizationRequest {
            organization: Some(proto::Organization {
                id: created.id.clone(),
                name: "Acme Corp".into(),
                external_id: String::new(),
                stripe_customer_id: "cus_1".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![
                    "name".into(),
                    "external_id".into(),
                    "stripe_customer_id".into(),
                ],
            }),
        })
        .await
        .expect("update")
        .into_inner()
        .organization
        .expect("org");
    assert_eq!(updated.name, "Acme Corp");
    assert_eq!(updated.external_id, "", "cleared by naming it in the mask");
    assert_eq!(updated.stripe_customer_id, "cus_1");
    assert_eq!(
        updated.metadata, created.metadata,
        "fields outside the mask are kept"
    );
    assert_eq!(updated.domains.len(), 1);

    orgs.delete_organization(proto::DeleteOrganizationRequest {
        id: created.id.clone(),
    })
    .await
    .expect("delete");
    let gone = orgs
        .get_organization(by_id(&created.id))
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(reason(&gone), "ORGANIZATION_NOT_FOUND");
    let resource = details(&gone)
        .resource_info()
        .cloned()
        .expect("ResourceInfo");
    assert_eq!(
        (
            resource.resource_type.as_str(),
            resource.resource_name.as_str()
        ),
        ("organization", created.id.as_str())
    );
    let again = orgs
        .delete_organization(proto::DeleteOrganizationRequest {
            id: created.id.clone(),
        })
        .await
        .expect_err("twice");
    assert_eq!(again.code(), Code::NotFound);
}

#[tokio::test]
async fn invalid_requests_name_every_bad_field_and_never_reach_workos() {
    let app = spawn_app().await;
    let mut orgs = app.orgs.clone();
    let mut portal = app.portal.clone();
    let too_many: std::collections::HashMap<String, String> =
        (0..11).map(|i| (format!("k{i}"), "v".into())).collect();
    let status = orgs
        .create_organization(proto::CreateOrganizationRequest {
            name: " ".into(),
            external_id: "x".repeat(65),
            metadata: too_many,
            domains: vec![
                proto::OrganizationDomain {
                    domain: "not a domain".into(),
                    ..Default::default()
                },
                proto::OrganizationDomain {
                    domain: "ok.example".into(),
                    state: proto::DomainState::Failed as i32,
                    ..Default::default()
                },
            ],
            request_id: "bad key with spaces".into(),
        })
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "INVALID_ARGUMENT");
    let mut fields = bad_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "domains[0].domain",
            "domains[1].state",
            "external_id",
            "metadata",
            "name",
            "request_id"
        ]
    );

    for (request, field) in [
        (proto::GetOrganizationRequest { organization: None }, "id"),
        (by_id("org_nope"), "id"),
        (
            proto::GetOrganizationRequest {
                organization: Some(proto::get_organization_request::Organization::ExternalId(
                    String::new(),
                )),
            },
            "external_id",
        ),
    ] {
        let status = orgs.get_organization(request).await.expect_err("invalid");
        assert_eq!(
            (status.code(), bad_fields(&status)),
            (Code::InvalidArgument, vec![field.to_owned()])
        );
    }
    let status = orgs
        .list_organizations(proto::ListOrganizationsRequest {
            page_size: 101,
            page_token: "garbage".into(),
            domains: vec!["x".into()],
            order: 9,
        })
        .await
        .expect_err("invalid");
    let mut fields = bad_fields(&status);
    fields.sort();
    assert_eq!(fields, ["domains[0]", "order", "page_size", "page_token"]);
    let status = orgs
        .update_organization(proto::UpdateOrganizationRequest {
            organization: Some(proto::Organization {
                id: "org_01EHWNCE74X7JSDV0X3SZ3KJNY".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into(), "create_time".into()],
            }),
        })
        .await
        .expect_err("invalid");
    assert_eq!(
        bad_fields(&status),
        ["organization.name", "update_mask.paths"]
    );
    let status = orgs
        .update_organization(proto::UpdateOrganizationRequest {
            organization: Some(proto::Organization::default()),
            update_mask: None,
        })
        .await
        .expect_err("invalid");
    assert_eq!(bad_fields(&status), ["organization.id", "update_mask"]);
    let status = orgs
        .ensure_organization(proto::EnsureOrganizationRequest::default())
        .await
        .expect_err("invalid");
    assert_eq!(bad_fields(&status), ["external_id", "name"]);

    let status = portal
        .generate_link(proto::GenerateLinkRequest {
            organization: None,
            intent: 0,
            return_url: "http://evil.example/".into(),
            success_url: "javascript:alert(1)".into(),
            external_user_id: String::new(),
            it_contact_emails: (0..21)
                .map(|i| format!("it{i}@acme.example"))
                .chain(["nope".to_owned()])
                .collect(),
        })
        .await
        .expect_err("invalid");
    assert_eq!(
        bad_fields(&status),
        [
            "organization_id",
            "intent",
            "return_url",
            "success_url",
            // An oversized list is refused as a whole; its items are not checked one by one.
            "it_contact_emails",
        ]
    );
    let status = portal
        .revoke_links(proto::RevokeLinksRequest::default())
        .await
        .expect_err("invalid");
    assert_eq!(bad_fields(&status), ["organization_id", "external_user_id"]);
    assert_eq!(
        app.emulator.total_requests().await,
        0,
        "nothing invalid reached WorkOS"
    );
}

#[tokio::test]
async fn duplicate_external_ids_are_already_exists() {
    let app = spawn_app().await;
    let mut orgs = app.orgs.clone();
    orgs.create_organization(create("Acme", "acme"))
        .await
        .expect("first");
    let status = orgs
        .create_organization(create("Acme again", "acme"))
        .await
        .expect_err("duplicate");
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(reason(&status), "EXTERNAL_ID_ALREADY_USED");
}

#[tokio::test]
async fn create_with_a_request_id_is_idempotent() {
    let app = spawn_app().await;
    let mut orgs = app.orgs.clone();
    let request = proto::CreateOrganizationRequest {
        request_id: "create-acme-1".into(),
        ..create("Acme", "")
    };
    let first = orgs
        .create_organization(request.clone())
        .await
        .expect("first")
        .into_inner();
    let second = orgs
        .create_organization(request)
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(first, second);
    let recent = app.emulator.control(Method::GET, "/requests", None).await;
    let keys: Vec<&str> = recent["recent"]
        .as_array()
        .expect("recent")
        .iter()
        .filter_map(|r| r["idempotency_key"].as_str())
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "the retry is answered by the gateway's record"
    );
    assert!(
        keys[0].starts_with("pg-") && !keys[0].contains("create-acme-1"),
        "scoped to the caller: {}",
        keys[0]
    );
}

#[tokio::test]
async fn listing_pages_through_with_opaque_tokens_both_ways() {
    let app = spawn_app().await;
    let mut orgs = app.orgs.clone();
    let mut ids = Vec::new();
    for i in 0..5 {
        let domain = proto::OrganizationDomain {
            domain: format!("o{i}.example"),
            ..Default::default()
        };
        let request = proto::CreateOrganizationRequest {
            domains: vec![domain],
            ..create(&format!("Org {i}"), "")
        };
        ids.push(
            orgs.create_organization(request)
                .await
                .expect("create")
                .into_inner()
                .organization
                .expect("org")
                .id,
        );
    }
    let list = |token: String| proto::ListOrganizationsRequest {
        page_size: 2,
        page_token: token,
        order: proto::ListOrder::Ascending as i32,
        domains: vec![],
    };
    let page1 = orgs
        .list_organizations(list(String::new()))
        .await
        .expect("page 1")
        .into_inner();
    assert_eq!(
        page1
            .organizations
            .iter()
            .map(|o| o.id.clone())
            .collect::<Vec<_>>(),
        ids[..2]
    );
    assert!(page1.previous_page_token.is_empty());
    assert!(!page1.next_page_token.contains("org_"), "tokens are opaque");
    let page2 = orgs
        .list_organizations(list(page1.next_page_token.clone()))
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(
        page2
            .organizations
            .iter()
            .map(|o| o.id.clone())
            .collect::<Vec<_>>(),
        ids[2..4]
    );
    let page3 = orgs
        .list_organizations(list(page2.next_page_token.clone()))
        .await
        .expect("page 3")
        .into_inner();
    assert_eq!(
        page3
            .organizations
            .iter()
            .map(|o| o.id.clone())
            .collect::<Vec<_>>(),
        ids[4..]
    );
    assert!(page3.next_page_token.is_empty(), "last page");
    let back = orgs
        .list_organizations(list(page3.previous_page_token.clone()))
        .await
        .expect("back")
        .into_inner();
    assert_eq!(
        back.organizations
            .iter()
            .map(|o| o.id.clone())
            .collect::<Vec<_>>(),
        ids[2..4]
    );
    let newest = orgs
        .list_organizations(proto::ListOrganizationsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("desc")
        .into_inner();
    assert_eq!(
        newest.organizations[0].id, ids[4],
        "newest first by default"
    );
    let filtered = orgs
        .list_organizations(proto::ListOrganizationsRequest {
            domains: vec!["o1.example".into(), "O3.example".into()],
            ..Default::default()
        })
        .await
        .expect("filter")
        .into_inner();
    let mut got: Vec<String> = filtered.organizations.into_iter().map(|o| o.id).collect();
    got.sort();
    assert_eq!(got, [ids[1].clone(), ids[3].clone()]);
    let other_query = proto::ListOrganizationsRequest {
        order: proto::ListOrder::Descending as i32,
        ..list(page1.next_page_token)
    };
    let status = orgs
        .list_organizations(other_query)
        .await
        .expect_err("token from another query");
    assert_eq!(bad_fields(&status), ["page_token"]);
}

#[tokio::test]
async fn ensure_creates_once_even_when_racing() {
    let app = spawn_app().await;
    let request = proto::EnsureOrganizationRequest {
        external_id: "race".into(),
        name: "Race Inc".into(),
        ..Default::default()
    };
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let mut orgs = app.orgs.clone();
            let request = request.clone();
            tokio::spawn(async move {
                orgs.ensure_organization(request)
                    .await
                    .map(|r| r.into_inner())
            })
        })
        .collect();
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for call in calls {
        let answer = call.await.expect("task").expect("ensure");
        created += usize::from(answer.created);
        ids.insert(answer.organization.expect("org").id);
    }
    assert_eq!(created, 1, "exactly one call created it");
    assert_eq!(ids.len(), 1, "every call got the same organization");
    let again = app
        .orgs
        .clone()
        .ensure_organization(request)
        .await
        .expect("again")
        .into_inner();
    assert!(!again.created);
    let all = app
        .emulator
        .api(Method::GET, "/organizations?limit=100")
        .send()
        .await
        .expect("list")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(
        all["data"].as_array().expect("data").len(),
        1,
        "one organization upstream"
    );
}

#[tokio::test]
async fn generate_link_mints_a_working_link_for_every_intent() {
    let app = spawn_app().await;
    let org = app
        .orgs
        .clone()
        .create_organization(create("Acme", "acme"))
        .await
        .expect("create")
        .into_inner()
        .organization
        .expect("org");
    let mut portal = app.portal.clone();
    for intent in [
        Intent::Sso,
        Intent::Dsync,
        Intent::AuditLogs,
        Intent::LogStreams,
        Intent::DomainVerification,
        Intent::CertificateRenewal,
        Intent::BringYourOwnKey,
    ] {
        let before = SystemTime::now();
        let request = proto::GenerateLinkRequest {
            return_url: "http://localhost:3000/back".into(),
            external_user_id: "admin-1".into(),
            it_contact_emails: vec!["it@acme.example".into()],
            ..link_by_external("acme", intent)
        };
        let link = portal
            .generate_link(request)
            .await
            .expect("generate")
            .into_inner()
            .portal_link
            .expect("link");
        assert_eq!(
            (link.organization_id.as_str(), link.intent()),
            (org.id.as_str(), intent)
        );
        let expires = SystemTime::try_from(link.expire_time.expect("expire_time")).expect("time");
        let lifetime = expires.duration_since(before).expect("in the future");
        assert!(
            lifetime > Duration::from_secs(299) && lifetime <= Duration::from_secs(301),
            "{lifetime:?}"
        );
        assert!(
            !format!("{link:?}").contains("secret="),
            "Debug redacts the link"
        );
        let page = reqwest::get(&link.link).await.expect("open");
        assert_eq!(page.status(), 200);
        let html = page.text().await.expect("html");
        let wire_name = portal_gateway::domain::Intent::ALL[intent as usize - 1].workos_name();
        assert!(
            html.contains(&format!("<strong id=\"intent\">{wire_name}</strong>")),
            "{html}"
        );
        assert!(html.contains("http://localhost:3000/back"));
    }
    let by_id = proto::GenerateLinkRequest {
        organization: Some(proto::generate_link_request::Organization::OrganizationId(
            org.id.clone(),
        )),
        intent: Intent::Sso as i32,
        ..Default::default()
    };
    let link = portal
        .generate_link(by_id)
        .await
        .expect("by id")
        .into_inner()
        .portal_link
        .expect("link");
    let html = reqwest::get(&link.link)
        .await
        .expect("open")
        .text()
        .await
        .expect("html");
    assert!(
        html.contains("https://app.example.com/settings/sso/done"),
        "configured default success URL for sso"
    );
}

#[tokio::test]
async fn links_for_unknown_organizations_are_not_found() {
    let app = spawn_app().await;
    let mut portal = app.portal.clone();
    let status = portal
        .generate_link(link_by_external("ghost", Intent::Sso))
        .await
        .expect_err("unknown");
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::NotFound, "ORGANIZATION_NOT_FOUND".to_owned())
    );
    let request = proto::GenerateLinkRequest {
        organization: Some(proto::generate_link_request::Organization::OrganizationId(
            "org_01EHWNCE74X7JSDV0X3SZ3KJNY".into(),
        )),
        intent: Intent::Sso as i32,
        ..Default::default()
    };
    let status = portal.generate_link(request).await.expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        details(&status)
            .resource_info()
            .map(|r| r.resource_name.clone()),
        Some("org_01EHWNCE74X7JSDV0X3SZ3KJNY".into())
    );
}

#[tokio::test]
async fn revoking_links_cuts_off_one_admin() {
    let app = spawn_app().await;
    app.orgs
        .clone()
        .create_organization(create("Acme", "acme"))
        .await
        .expect("create");
    let mut portal = app.portal.clone();
    let mint = |user: &str| proto::GenerateLinkRequest {
        external_user_id: user.into(),
        ..link_by_external("acme", Intent::Dsync)
    };
    let gone = portal
        .generate_link(mint("leaver"))
        .await
        .expect("mint")
        .into_inner()
        .portal_link
        .expect("link");
    let kept = portal
        .generate_link(mint("stayer"))
        .await
        .expect("mint")
        .into_inner()
        .portal_link
        .expect("link");
    let revoked = portal
        .revoke_links(proto::RevokeLinksRequest {
            organization: Some(proto::revoke_links_request::Organization::ExternalId(
                "acme".into(),
            )),
            external_user_id: "leaver".into(),
        })
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(revoked.organization_id, gone.organization_id);
    assert_eq!(reqwest::get(&gone.link).await.expect("open").status(), 410);
    assert_eq!(reqwest::get(&kept.link).await.expect("open").status(), 200);
}

#[tokio::test]
async fn list_intents_names_all_seven_with_defaults() {
    let app = spawn_app().await;
    let intents = app
        .portal
        .clone()
        .list_intents(proto::ListIntentsRequest {})
        .await
        .expect("list")
        .into_inner()
        .intents;
    let names: Vec<&str> = intents.iter().map(|i| i.workos_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "sso",
            "dsync",
            "audit_logs",
            "log_streams",
            "domain_verification",
            "certificate_renewal",
            "bring_your_own_key"
        ]
    );
    assert_eq!(
        intents[0].default_success_url,
        "https://app.example.com/settings/sso/done"
    );
    assert!(intents[1].default_success_url.is_empty());
    assert!(
        intents
            .iter()
            .all(|i| !i.description.is_empty() && i.intent != 0)
    );
}

#[tokio::test]
async fn upstream_failures_map_to_precise_statuses_without_echoing_bodies() {
    // One attempt and no cache, so each injected failure reaches the caller as it is.
    let emulator = TestEmulator::start().await;
    let config = base_config(&emulator.url)
        + "[workos.retry]\nmax_attempts = 1\n[workos.cache]\nttl = \"0s\"\n";
    let app = spawn_app_with(emulator, &config, "sk_test_emulator").await;
    let org = app
        .orgs
        .clone()
        .create_organization(create("Acme", "acme"))
        .await
        .expect("create")
        .into_inner()
        .organization
        .expect("org");
    let mut orgs = app.orgs.clone();
    let route = "GET /organizations/{id}";
    let cases = [
        (
            json!({"route": route, "status": 503, "count": 1}),
            Code::Unavailable,
            "WORKOS_UNAVAILABLE",
            Some(Duration::from_secs(1)),
        ),
        (
            json!({"route": route, "status": 500, "retry_after": 4, "count": 1}),
            Code::Unavailable,
            "WORKOS_UNAVAILABLE",
            Some(Duration::from_secs(4)),
        ),
        (
            json!({"route": route, "status": 429, "retry_after": 7, "count": 1}),
            Code::ResourceExhausted,
            "WORKOS_RATE_LIMITED",
            Some(Duration::from_secs(7)),
        ),
        (
            json!({"route": route, "status": 401, "count": 1}),
            Code::Internal,
            "WORKOS_API_KEY_REJECTED",
            None,
        ),
        (
            json!({"route": route, "status": 403, "count": 1}),
            Code::Internal,
            "WORKOS_PERMISSION_DENIED",
            None,
        ),
        (
            json!({"route": route, "status": 418, "count": 1}),
            Code::Internal,
            "WORKOS_UNEXPECTED_STATUS",
            None,
        ),
        (
            json!({"route": route, "malformed": true, "count": 1}),
            Code::Internal,
            "WORKOS_MALFORMED_RESPONSE",
            None,
        ),
        (
            json!({"route": route, "status": 409, "count": 1}),
            Code::AlreadyExists,
            "WORKOS_CONFLICT",
            None,
        ),
        (
            json!({"route": route, "status": 422, "count": 1}),
            Code::InvalidArgument,
            "WORKOS_REJECTED_REQUEST",
            None,
        ),
    ];
    for (fault, code, expected_reason, retry) in cases {
        app.emulator.fault(fault.clone()).await;
        let status = orgs
            .get_organization(by_id(&org.id))
            .await
            .expect_err("fault");
        assert_eq!(
            (status.code(), reason(&status)),
            (code, expected_reason.to_owned()),
            "{fault}"
        );
        assert_eq!(
            details(&status).retry_info().and_then(|r| r.retry_delay),
            retry,
            "{fault}"
        );
        let message = status.message();
        for leak in [
            "Internal Server Error",
            "server_error",
            "{",
            "Unauthorized",
            "injected",
            "127.0.0.1",
            "sk_test",
        ] {
            assert!(!message.contains(leak), "{leak:?} leaked into {message:?}");
        }
        let info = details(&status).error_info().cloned().expect("ErrorInfo");
        assert_eq!(
            info.metadata.get("workos_request_id").map(String::len),
            Some(36),
            "{fault}"
        );
    }
    assert_eq!(
        orgs.get_organization(by_id(&org.id))
            .await
            .expect("recovered")
            .into_inner()
            .organization
            .expect("org")
            .id,
        org.id
    );
}

#[tokio::test]
async fn an_unreachable_workos_is_unavailable_and_a_rejected_key_is_internal() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dead_url = format!("http://{}", dead.local_addr().expect("addr"));
    drop(dead);
    let app = spawn_app_with(
        TestEmulator::start().await,
        &base_config(&dead_url),
        "sk_test_emulator",
    )
    .await;
    let status = app
        .orgs
        .clone()
        .get_organization(by_id("org_01EHWNCE74X7JSDV0X3SZ3KJNY"))
        .await
        .expect_err("unreachable");
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::Unavailable, "WORKOS_UNREACHABLE".to_owned())
    );
    assert!(!status.message().contains(&dead_url));

    let emulator = TestEmulator::start().await;
    let config = base_config(&emulator.url);
    let app = spawn_app_with(emulator, &config, "sk_test_wrong_key_canary").await;
    let status = app
        .orgs
        .clone()
        .get_organization(by_id("org_01EHWNCE74X7JSDV0X3SZ3KJNY"))
        .await
        .expect_err("rejected key");
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::Internal, "WORKOS_API_KEY_REJECTED".to_owned())
    );
    assert!(!format!("{status:?}").contains("canary"));
}

#[tokio::test]
async fn a_slow_workos_is_deadline_exceeded_by_the_client_timeout() {
    let emulator = TestEmulator::start().await;
    let config = base_config(&emulator.url)
        .replace("request_timeout = \"5s\"", "request_timeout = \"200ms\"");
    let app = spawn_app_with(emulator, &config, "sk_test_emulator").await;
    app.emulator
        .fault(json!({"route": "GET /organizations/{id}", "delay_ms": 2000}))
        .await;
    let started = std::time::Instant::now();
    let status = app
        .orgs
        .clone()
        .get_organization(by_id("org_01EHWNCE74X7JSDV0X3SZ3KJNY"))
        .await
        .expect_err("slow");
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::DeadlineExceeded, "WORKOS_TIMEOUT".to_owned())
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        app.emulator.count("GET /organizations/{id}").await,
        3,
        "a read is retried, up to three attempts"
    );
}

#[tokio::test]
async fn shutdown_turns_health_not_serving_and_lets_in_flight_calls_finish() {
    let mut app = spawn_app().await;
    app.orgs
        .clone()
        .create_organization(create("Acme", "acme"))
        .await
        .expect("create");
    let mut watch = app
        .health
        .clone()
        .watch(HealthCheckRequest {
            service: "adminportal.v1.PortalService".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    assert_eq!(
        watch
            .message()
            .await
            .expect("first")
            .expect("status")
            .status(),
        ServingStatus::Serving
    );
    app.emulator
        .fault(json!({"route": "POST /portal/generate_link", "delay_ms": 400, "count": 1}))
        .await;
    let mut portal = app.portal.clone();
    let in_flight = tokio::spawn(async move {
        portal
            .generate_link(link_by_external("acme", Intent::Sso))
            .await
    });
    // Wait until the call has reached WorkOS, so it is truly in flight when the signal comes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.emulator.count("POST /portal/generate_link").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never reached WorkOS"
        );
        tokio::task::yield_now().await;
    }
    app.signal_shutdown();
    let next = watch.message().await.expect("update").expect("status");
    assert_eq!(next.status(), ServingStatus::NotServing);
    // A Watch stream never ends by itself; a prober closes it once it has seen NOT_SERVING.
    drop(watch);
    let answer = in_flight
        .await
        .expect("task")
        .expect("the in-flight call finished");
    assert!(answer.into_inner().portal_link.is_some());
    let server = app.take_server();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("stopped")
        .expect("task")
        .expect("clean exit");
}

#[tokio::test]
async fn workos_is_reached_through_the_configured_proxy_with_its_credentials() {
    // Basic base64("gateway:s3cr%t") with the password percent-decoded from the URL.
    let expected = "Basic Z2F0ZXdheTpzM2NyJXQ=".to_owned();
    let (proxy, seen) = start_connect_proxy(Some(expected.clone())).await;
    let emulator = TestEmulator::start().await;
    let emulator_address = emulator.url.trim_start_matches("http://").to_owned();
    let config = base_config(&emulator.url).replacen(
        "[workos]\n",
        &format!("[workos]\nproxy = \"http://gateway:s3cr%25t@{proxy}\"\n"),
        1,
    );
    let app = spawn_app_with(emulator, &config, crate::helpers::API_KEY).await;
    let mut orgs = app.orgs.clone();
    let mut portal = app.portal.clone();
    orgs.ensure_organization(proto::EnsureOrganizationRequest {
        external_id: "proxied".into(),
        name: "Proxied Inc".into(),
        ..Default::default()
    })
    .await
    .expect("ensure through the proxy");
    let link = portal
        .generate_link(link_by_external("proxied", Intent::Sso))
        .await
        .expect("link through the proxy")
        .into_inner();
    assert!(link.portal_link.is_some());

    let seen = seen.lock().expect("record").clone();
    assert!(!seen.is_empty(), "no connection went through the proxy");
    for (target, authorization) in &seen {
        assert_eq!(target, &emulator_address);
        assert_eq!(authorization.as_deref(), Some(expected.as_str()));
    }
    let requests = app.emulator.total_requests().await;
    assert!(requests >= 2, "{requests} WorkOS requests");
}

#[tokio::test]
async fn a_proxy_that_refuses_the_tunnel_is_an_unavailable_upstream() {
    let (proxy, seen) = start_connect_proxy(Some("Basic nobody-has-this".into())).await;
    let emulator = TestEmulator::start().await;
    let config = base_config(&emulator.url).replacen(
        "[workos]\n",
        &format!("[workos]\nproxy = \"http://{proxy}\"\n"),
        1,
    );
    let app = spawn_app_with(emulator, &config, crate::helpers::API_KEY).await;
    let mut portal = app.portal.clone();
    let status = portal
        .generate_link(link_by_external("anyone", Intent::Sso))
        .await
        .expect_err("the proxy refuses");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(!seen.lock().expect("record").is_empty());
    assert_eq!(app.emulator.total_requests().await, 0);
}
