//! Identity, policy and audit through the gRPC interface (quality bar S1 to S4, S6, S7): the
//! identity matrix for every RPC, spoofed and well-formed mesh identities, mTLS client
//! certificates, JWT attacks, hostile return URLs, organization scope and the audit trail.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portal_gateway::proto::{self, Intent};
use serde_json::{Value, json};
use tonic::{Code, Status};

use crate::helpers::{
    ADMIN_TOKEN, API_KEY, Clients, Credentials, TestApp, TestEmulator, bad_fields, base_config,
    config_with_tokens, reason, spawn_app_with, temp_path, wait_until,
};

/// The RPCs the policy can name, and a request for each that succeeds for an allowed caller.
const RPCS: [&str; 10] = [
    "CreateOrganization",
    "GetOrganization",
    "ListOrganizations",
    "UpdateOrganization",
    "DeleteOrganization",
    "EnsureOrganization",
    "GenerateLink",
    "RevokeLinks",
    "ListIntents",
    "CheckAccess",
];

fn by_id(id: &str) -> proto::GetOrganizationRequest {
    proto::GetOrganizationRequest {
        organization: Some(proto::get_organization_request::Organization::Id(id.into())),
    }
}

async fn create_org(app: &TestApp, name: &str, external_id: &str) -> String {
    let request = proto::CreateOrganizationRequest {
        name: name.into(),
        external_id: external_id.into(),
        ..Default::default()
    };
    app.orgs
        .clone()
        .create_organization(request)
        .await
        .expect("admin creates")
        .into_inner()
        .organization
        .expect("org")
        .id
}

/// Calls `rpc` as `clients`; `n` keeps names unique.
async fn call(app: &TestApp, clients: &Clients, rpc: &str, n: usize) -> Result<(), Status> {
    let mut c = clients.clone();
    match rpc {
        "CreateOrganization" => {
            let request = proto::CreateOrganizationRequest {
                name: format!("New {n}"),
                ..Default::default()
            };
            c.orgs.create_organization(request).await.map(drop)
        }
        "GetOrganization" => c
            .orgs
            .get_organization(by_id(&create_org(app, "Get", "").await))
            .await
            .map(drop),
        "ListOrganizations" => c
            .orgs
            .list_organizations(proto::ListOrganizationsRequest::default())
            .await
            .map(drop),
        "UpdateOrganization" => {
            let id = create_org(app, "Update", "").await;
            let request = proto::UpdateOrganizationRequest {
                organization: Some(proto::Organization {
                    id,
                    name: "Renamed".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
            };
            c.orgs.update_organization(request).await.map(drop)
        }
        "DeleteOrganization" => {
            let id = create_org(app, "Delete", "").await;
            c.orgs
                .delete_organization(proto::DeleteOrganizationRequest { id })
                .await
                .map(drop)
        }
        "EnsureOrganization" => {
            let request = proto::EnsureOrganizationRequest {
                external_id: format!("ensure-{n}"),
                name: "Ensure".into(),
                ..Default::default()
            };
            c.orgs.ensure_organization(request).await.map(drop)
        }
        "GenerateLink" => {
            let request = proto::GenerateLinkRequest {
                organization: Some(proto::generate_link_request::Organization::OrganizationId(
                    create_org(app, "Link", "").await,
                )),
                intent: Intent::Sso as i32,
                ..Default::default()
            };
            c.portal.generate_link(request).await.map(drop)
        }
        "RevokeLinks" => {
            let request = proto::RevokeLinksRequest {
                organization: Some(proto::revoke_links_request::Organization::OrganizationId(
                    create_org(app, "Revoke", "").await,
                )),
                external_user_id: "admin-1".into(),
            };
            c.portal.revoke_links(request).await.map(drop)
        }
        "ListIntents" => c
            .portal
            .list_intents(proto::ListIntentsRequest {})
            .await
            .map(drop),
        "CheckAccess" => {
            let request = proto::CheckAccessRequest {
                rpc: "GetOrganization".into(),
                ..Default::default()
            };
            c.access.check_access(request).await.map(drop)
        }
        other => panic!("unknown rpc {other}"),
    }
}

fn token(identity: &str) -> String {
    format!("token-of-{identity}")
}

/// A configuration with one `only-<Rpc>` caller per RPC, allowed that RPC alone, and a proven
/// `stranger` that no rule names.
fn matrix_config(emulator_url: &str) -> String {
    let mut identities = vec!["stranger".to_owned()];
    identities.extend(RPCS.iter().map(|rpc| format!("only-{rpc}")));
    let tokens: Vec<(String, String)> = identities
        .iter()
        .map(|identity| (identity.clone(), token(identity)))
        .collect();
    let tokens: Vec<(&str, &str)> = tokens
        .iter()
        .map(|(i, t)| (i.as_str(), t.as_str()))
        .collect();
    let mut config = config_with_tokens(emulator_url, &tokens);
    for rpc in RPCS {
        config.push_str(&format!(
            "[[policy.callers]]\nname = \"only-{rpc}\"\nidentities = [\"token:only-{rpc}\"]\nintents = [\"*\"]\nrpcs = [\"{rpc}\"]\norganizations = [\"*\"]\nreturn_origins = [\"*\"]\n"
        ));
    }
    config
}

#[tokio::test]
async fn the_identity_matrix_equals_the_policy_for_every_rpc() {
    let emulator = TestEmulator::start().await;
    let config = matrix_config(&emulator.url);
    let app = spawn_app_with(emulator, &config, API_KEY).await;
    let mut denials: u64 = 0;
    let mut n = 0;
    for rpc in RPCS {
        let other = if rpc == "ListIntents" {
            "GetOrganization"
        } else {
            "ListIntents"
        };
        let cases: [(&str, Credentials, Code, Option<&str>); 5] = [
            (
                "no identity",
                Credentials::default(),
                Code::Unauthenticated,
                Some("MISSING_CREDENTIALS"),
            ),
            (
                "unknown token",
                Credentials {
                    token: Some("not-a-known-token".into()),
                    ..Default::default()
                },
                Code::Unauthenticated,
                Some("INVALID_TOKEN"),
            ),
            (
                "proven, in no rule",
                Credentials {
                    token: Some(token("stranger")),
                    ..Default::default()
                },
                // CheckAccess about yourself answers (allowed = false) rather than failing.
                if rpc == "CheckAccess" {
                    Code::Ok
                } else {
                    Code::PermissionDenied
                },
                if rpc == "CheckAccess" {
                    None
                } else {
                    Some("UNKNOWN_CALLER")
                },
            ),
            (
                "allowed",
                Credentials {
                    token: Some(token(&format!("only-{rpc}"))),
                    ..Default::default()
                },
                Code::Ok,
                None,
            ),
            (
                "allowed another RPC only",
                Credentials {
                    token: Some(token(&format!("only-{other}"))),
                    ..Default::default()
                },
                // Asking the policy about yourself is always allowed.
                if rpc == "CheckAccess" {
                    Code::Ok
                } else {
                    Code::PermissionDenied
                },
                if rpc == "CheckAccess" {
                    None
                } else {
                    Some("RPC_NOT_ALLOWED")
                },
            ),
        ];
        for (who, credentials, code, expected_reason) in cases {
            n += 1;
            let result = call(&app, &app.clients(credentials), rpc, n).await;
            match result {
                Ok(()) => assert_eq!(code, Code::Ok, "{rpc} as {who} was allowed"),
                Err(status) => {
                    assert_eq!(status.code(), code, "{rpc} as {who}: {status:?}");
                    assert_eq!(
                        Some(reason(&status).as_str()),
                        expected_reason,
                        "{rpc} as {who}"
                    );
                    denials += 1;
                }
            }
        }
    }
    // Authenticated denials are recorded one by one; unauthenticated calls, which anyone can
    // make, are summed up per peer and reason (every 50 ms in tests).
    let audited = |records: &[serde_json::Value]| -> u64 {
        let one_by_one = records
            .iter()
            .filter(|r| r["outcome"] == "PERMISSION_DENIED")
            .count() as u64;
        let summed: u64 = records
            .iter()
            .filter(|r| r["rpc"] == "UnauthenticatedCalls")
            .filter_map(|r| r["count"].as_u64())
            .sum();
        one_by_one + summed
    };
    crate::helpers::wait_until(|| async { audited(&app.audit_records()) >= denials }).await;
    let records = app.audit_records();
    assert_eq!(
        audited(&records),
        denials,
        "every denial is audited exactly once"
    );
    assert!(
        records
            .iter()
            .all(|r| r["outcome"] != "UNAUTHENTICATED" || r["rpc"] == "UnauthenticatedCalls"),
        "no unauthenticated call has a record of its own"
    );
    let allowed_mutations: Vec<&str> = records
        .iter()
        .filter(|r| {
            r["outcome"] == "OK"
                && r["caller"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("token:only-"))
        })
        .filter_map(|r| r["rpc"].as_str())
        .collect();
    assert_eq!(
        allowed_mutations,
        [
            "CreateOrganization",
            "UpdateOrganization",
            "DeleteOrganization",
            "EnsureOrganization",
            "GenerateLink",
            "RevokeLinks"
        ],
        "each allowed minting or mutating call has one record"
    );
}

fn restricted_config(emulator_url: &str, extra_tokens: &[(&str, &str)], rules: &str) -> String {
    config_with_tokens(emulator_url, extra_tokens) + rules
}

const BILLING_RULE: &str = r#"
[[policy.callers]]
name = "billing"
identities = ["token:billing"]
rpcs = ["GenerateLink", "GetOrganization", "RevokeLinks", "ListOrganizations", "UpdateOrganization", "CheckAccess"]
intents = ["sso", "dsync"]
organizations = ["external:acme-*"]
return_origins = ["https://billing.example.com/settings"]
require_acting_user = true
"#;

#[tokio::test]
async fn restricted_callers_get_the_precise_denial() {
    let emulator = TestEmulator::start().await;
    let config = restricted_config(&emulator.url, &[("billing", "billing-token")], BILLING_RULE);
    let app = spawn_app_with(emulator, &config, API_KEY).await;
    let acme = create_org(&app, "Acme EU", "acme-eu").await;
    let globex = create_org(&app, "Globex", "globex").await;
    let billing = |user: Option<&str>| {
        app.clients(Credentials {
            token: Some("billing-token".into()),
            acting_user: user.map(Into::into),
            ..Default::default()
        })
    };
    let link = |org: &str, intent: Intent, return_url: &str| proto::GenerateLinkRequest {
        organization: Some(proto::generate_link_request::Organization::OrganizationId(
            org.into(),
        )),
        intent: intent as i32,
        return_url: return_url.into(),
        ..Default::default()
    };
    let mut portal = billing(Some("it-admin@acme.example")).portal;
    let minted = portal
        .generate_link(link(
            &acme,
            Intent::Sso,
            "https://billing.example.com/settings/sso",
        ))
        .await
        .expect("allowed");
    assert_eq!(
        minted
            .into_inner()
            .portal_link
            .expect("link")
            .organization_id,
        acme,
        "matched by external-id pattern after one lookup"
    );

    let cases = [
        (
            link(&globex, Intent::Sso, ""),
            Code::PermissionDenied,
            "ORGANIZATION_NOT_ALLOWED",
        ),
        (
            link("org_01EHWNCE74X7JSDV0X3SZ3KJNY", Intent::Sso, ""),
            Code::PermissionDenied,
            "ORGANIZATION_NOT_ALLOWED",
        ),
        (
            link(&acme, Intent::AuditLogs, ""),
            Code::PermissionDenied,
            "INTENT_NOT_ALLOWED",
        ),
        (
            link(&acme, Intent::Sso, "https://billing.example.com/admin"),
            Code::InvalidArgument,
            "RETURN_URL_NOT_ALLOWED",
        ),
    ];
    for (request, code, expected) in cases {
        let status = portal
            .generate_link(request.clone())
            .await
            .expect_err("denied");
        assert_eq!(
            (status.code(), reason(&status)),
            (code, expected.to_owned()),
            "{request:?}"
        );
        assert!(!status.message().contains("secret="));
    }
    let status = billing(None)
        .portal
        .generate_link(link(&acme, Intent::Sso, ""))
        .await
        .expect_err("no acting user");
    assert_eq!(reason(&status), "ACTING_USER_REQUIRED");
    let mut orgs = billing(Some("it-admin")).orgs;
    let status = orgs
        .list_organizations(proto::ListOrganizationsRequest::default())
        .await
        .expect_err("cannot enumerate");
    assert_eq!(reason(&status), "ORGANIZATION_NOT_ALLOWED");
    let status = orgs
        .delete_organization(proto::DeleteOrganizationRequest { id: acme.clone() })
        .await
        .expect_err("not allowed");
    assert_eq!(reason(&status), "RPC_NOT_ALLOWED");
    let move_out = proto::UpdateOrganizationRequest {
        organization: Some(proto::Organization {
            id: acme.clone(),
            external_id: "globex-2".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["external_id".into()],
        }),
    };
    let status = orgs
        .update_organization(move_out)
        .await
        .expect_err("cannot move an organization out of scope");
    assert_eq!(reason(&status), "ORGANIZATION_NOT_ALLOWED");
    // Clearing the external id would move it out of scope as surely as changing it.
    let clear = proto::UpdateOrganizationRequest {
        organization: Some(proto::Organization {
            id: acme.clone(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["external_id".into()],
        }),
    };
    let status = orgs
        .update_organization(clear)
        .await
        .expect_err("cannot clear the id that puts it in scope");
    assert_eq!(reason(&status), "ORGANIZATION_NOT_ALLOWED");
    let by_external = proto::GetOrganizationRequest {
        organization: Some(proto::get_organization_request::Organization::ExternalId(
            "acme-eu".into(),
        )),
    };
    assert_eq!(
        orgs.get_organization(by_external)
            .await
            .expect("in scope")
            .into_inner()
            .organization
            .expect("org")
            .id,
        acme
    );

    let mut access = billing(None).access;
    let check = |rpc: &str, org: &str, intent: Intent| proto::CheckAccessRequest {
        rpc: rpc.into(),
        organization: Some(proto::check_access_request::Organization::OrganizationId(
            org.into(),
        )),
        intent: intent as i32,
        acting_user: "someone".into(),
        ..Default::default()
    };
    let answer = access
        .check_access(check("GenerateLink", &acme, Intent::Dsync))
        .await
        .expect("dry run")
        .into_inner();
    assert!(answer.allowed, "{answer:?}");
    assert_eq!(
        (answer.rule.as_str(), answer.reason.as_str()),
        ("billing", "ALLOWED")
    );
    let answer = access
        .check_access(check("GenerateLink", &globex, Intent::Dsync))
        .await
        .expect("dry run")
        .into_inner();
    assert!(!answer.allowed);
    assert_eq!(answer.reason, "ORGANIZATION_NOT_ALLOWED");
    assert!(
        answer.explanation.contains("billing"),
        "{}",
        answer.explanation
    );
    let other = proto::CheckAccessRequest {
        identity: "token:admin".into(),
        ..check("DeleteOrganization", &globex, Intent::Unspecified)
    };
    let answer = access
        .check_access(other)
        .await
        .expect("billing may check others")
        .into_inner();
    assert!(answer.allowed && answer.identity == "token:admin");
}

#[tokio::test]
async fn hostile_return_urls_are_invalid_argument_unless_exactly_allowed() {
    let emulator = TestEmulator::start().await;
    let rule = r#"
[[policy.callers]]
name = "app"
identities = ["token:app"]
rpcs = ["*"]
intents = ["*"]
organizations = ["*"]
return_origins = ["https://app.example.com/settings", "https://admin.example.com:8443"]
"#;
    let config = restricted_config(&emulator.url, &[("app", "app-token")], rule)
        .replace("allow_http_loopback = true", "allow_http_loopback = false");
    let app = spawn_app_with(emulator, &config, API_KEY).await;
    let org = create_org(&app, "Acme", "acme").await;
    let mut portal = app.as_token("app-token").portal;
    let mint = |url: &str| proto::GenerateLinkRequest {
        organization: Some(proto::generate_link_request::Organization::OrganizationId(
            org.clone(),
        )),
        intent: Intent::Sso as i32,
        return_url: url.into(),
        ..Default::default()
    };
    for allowed in [
        "https://app.example.com/settings",
        "https://app.example.com/settings/sso?tab=1",
        "https://APP.example.com/settings/x",
        "https://app.example.com:443/settings",
        "https://admin.example.com:8443/anything",
    ] {
        portal
            .generate_link(mint(allowed))
            .await
            .unwrap_or_else(|s| panic!("{allowed} refused: {s:?}"));
    }
    let hostile = [
        "javascript:alert(1)",
        "data:text/html,<script>",
        "http://app.example.com/settings",
        "ftp://app.example.com/settings",
        "//app.example.com/settings",
        "/settings",
        "https://user:pass@app.example.com/settings",
        "https://app.example.com@evil.example/settings",
        "https://app.example.com.evil.example/settings",
        "https://evilapp.example.com/settings",
        "https://app-example.com/settings",
        "https://app.example.com\\@evil.example/settings",
        "https://app.example.com\\settings",
        "https://%61pp.example.com/settings",
        "https://app.example.com%2eevil.example/settings",
        "https://app.example.com:8443/settings",
        "https://app.example.com:444/settings",
        "https://admin.example.com/anything",
        "https://127.0.0.1/settings",
        "https://[::1]/settings",
        "https://2130706433/settings",
        "https://app.example.com./settings",
        "https://аpp.example.com/settings",
        "https://xn--pp-8cd.example.com/settings",
        "https://app.example.com/settingsevil",
        "https://app.example.com/other",
        "https://app.example.com/settings/../admin",
        "https://app.example.com/settings#frag",
        "https://app.example.com/set tings",
        "https://app.example.com/settings\n",
        " https://app.example.com/settings",
    ];
    for url in hostile {
        let status = portal.generate_link(mint(url)).await.expect_err(url);
        assert_eq!(status.code(), Code::InvalidArgument, "{url}: {status:?}");
        assert_eq!(bad_fields(&status), ["return_url"], "{url}");
        let success = proto::GenerateLinkRequest {
            return_url: String::new(),
            success_url: url.into(),
            ..mint("")
        };
        let status = portal.generate_link(success).await.expect_err(url);
        assert_eq!(
            (status.code(), bad_fields(&status)),
            (Code::InvalidArgument, vec!["success_url".to_owned()]),
            "{url}"
        );
    }
    assert_eq!(
        app.emulator.count("POST /portal/generate_link").await,
        5,
        "no hostile URL reached WorkOS"
    );
}

#[tokio::test]
async fn spoofed_identity_headers_from_an_untrusted_peer_are_rejected() {
    let app = crate::helpers::spawn_app().await;
    for (name, value) in [
        (
            "x-forwarded-client-cert",
            "URI=spiffe://cluster.local/ns/admin/sa/admin".to_owned(),
        ),
        (
            "l5d-client-id",
            "admin.default.serviceaccount.identity.linkerd.cluster.local".to_owned(),
        ),
    ] {
        for token in [None, Some(ADMIN_TOKEN.to_owned())] {
            let clients = app.clients(Credentials {
                token,
                headers: vec![(name, value.clone())],
                ..Default::default()
            });
            let status = clients
                .portal
                .clone()
                .list_intents(proto::ListIntentsRequest {})
                .await
                .expect_err("spoofed");
            assert_eq!(
                (status.code(), reason(&status)),
                (
                    Code::Unauthenticated,
                    "UNTRUSTED_IDENTITY_HEADER".to_owned()
                ),
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn mesh_identities_from_a_trusted_proxy_must_be_well_formed() {
    let emulator = TestEmulator::start().await;
    let rules = r#"
[auth.mesh]
trusted_proxies = ["127.0.0.1/32", "::1"]
trust_domain = "cluster.local"
[[policy.callers]]
name = "billing"
identities = ["spiffe://cluster.local/ns/billing/sa/billing", "linkerd:billing.billing.serviceaccount.identity.linkerd.cluster.local"]
intents = ["*"]
rpcs = ["ListIntents"]
organizations = ["*"]
"#;
    let config = base_config(&emulator.url) + rules;
    let app = spawn_app_with(emulator, &config, API_KEY).await;
    let with = |name: &'static str, value: &str| {
        app.clients(Credentials {
            headers: vec![(name, value.to_owned())],
            ..Default::default()
        })
    };
    let good = r#"By=spiffe://cluster.local/ns/gw/sa/gw;Hash=1;Subject="CN=x";URI=spiffe://cluster.local/ns/billing/sa/billing"#;
    with("x-forwarded-client-cert", good)
        .portal
        .list_intents(proto::ListIntentsRequest {})
        .await
        .expect("trusted xfcc");
    with(
        "l5d-client-id",
        "billing.billing.serviceaccount.identity.linkerd.cluster.local",
    )
    .portal
    .list_intents(proto::ListIntentsRequest {})
    .await
    .expect("trusted linkerd id");
    for bad in [
        "URI=spiffe://cluster.local/ns/a/sa/a;URI=spiffe://cluster.local/ns/billing/sa/billing",
        "URI=spiffe://evil.example/ns/billing/sa/billing",
        "URI=https://cluster.local/ns/billing/sa/billing",
        "Hash=abc",
        // A caller's own element that leaves a quote open, then what its proxy appends: the
        // open quote must not make the caller's URI the only one.
        r#"URI=spiffe://cluster.local/ns/billing/sa/billing;X=",By=spiffe://cluster.local/ns/gw/sa/gw;URI=spiffe://cluster.local/ns/other/sa/other"#,
    ] {
        let status = with("x-forwarded-client-cert", bad)
            .portal
            .list_intents(proto::ListIntentsRequest {})
            .await
            .expect_err(bad);
        assert_eq!(status.code(), Code::Unauthenticated, "{bad}");
    }
    let status = with(
        "x-forwarded-client-cert",
        "URI=spiffe://cluster.local/ns/other/sa/other",
    )
    .portal
    .list_intents(proto::ListIntentsRequest {})
    .await
    .expect_err("proven but not in the policy");
    assert_eq!(status.code(), Code::PermissionDenied);
    // A mesh header that is present but not text is refused, never taken as absent (which would
    // fall through to another way of proving who the caller is).
    for name in ["l5d-client-id", "x-forwarded-client-cert"] {
        let mut request = tonic::Request::new(proto::ListIntentsRequest {});
        request.metadata_mut().insert(
            name,
            tonic::metadata::AsciiMetadataValue::try_from(&b"caf\xe9"[..]).expect("obs-text"),
        );
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", crate::helpers::ADMIN_TOKEN)
                .parse()
                .expect("token"),
        );
        let status = app
            .clients(Credentials::default())
            .portal
            .list_intents(request)
            .await
            .expect_err("not text");
        assert_eq!(reason(&status), "INVALID_MESH_IDENTITY", "{name}");
    }
}

/// A CA, and client certificates it signs with the given URI SANs.
struct Pki {
    ca_pem: String,
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_pem = ca_params.self_signed(&ca_key).expect("ca").pem();
        Self {
            ca_pem,
            ca_params,
            ca_key,
        }
    }

    /// (certificate PEM, key PEM)
    fn issue(&self, dns: &[&str], uris: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
                .expect("params");
        for uri in uris {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI((*uri).try_into().expect("ia5")));
        }
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

#[tokio::test]
async fn client_certificates_prove_a_single_spiffe_id_when_the_gateway_terminates_mtls() {
    let pki = Pki::new();
    let (server_cert, server_key) = pki.issue(&["localhost"], &[]);
    let write = |name: &str, text: &str| {
        let path = temp_path(name);
        std::fs::write(&path, text).expect("write pem");
        path.display().to_string()
    };
    let emulator = TestEmulator::start().await;
    let tls = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\ntrust_domain = \"cluster.local\"\n",
        write("server.pem", &server_cert),
        write("server.key", &server_key),
        write("ca.pem", &pki.ca_pem)
    );
    let rule = "[[policy.callers]]\nname = \"billing\"\nidentities = [\"spiffe://cluster.local/ns/billing/sa/billing\"]\nintents = [\"*\"]\nrpcs = [\"ListIntents\"]\norganizations = [\"*\"]\n";
    let config = format!("{}{rule}{tls}", base_config(&emulator.url));
    let app = spawn_app_with_tls(emulator, &config).await;
    let connect = |cert: (String, String)| {
        let ca = pki.ca_pem.clone();
        let addr = app.0;
        async move {
            let tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                .identity(tonic::transport::Identity::from_pem(cert.0, cert.1))
                .domain_name("localhost");
            let channel = tonic::transport::Channel::from_shared(format!("https://{addr}"))
                .expect("uri")
                .tls_config(tls)
                .expect("tls")
                .connect()
                .await
                .expect("connect");
            proto::portal_service_client::PortalServiceClient::new(channel)
        }
    };
    let mut good = connect(pki.issue(&[], &["spiffe://cluster.local/ns/billing/sa/billing"])).await;
    good.list_intents(proto::ListIntentsRequest {})
        .await
        .expect("a single SPIFFE URI SAN proves the caller");
    for (uris, why) in [
        (vec![], "no URI SAN"),
        (
            vec![
                "spiffe://cluster.local/ns/billing/sa/billing",
                "spiffe://cluster.local/ns/admin/sa/admin",
            ],
            "two URI SANs",
        ),
        (
            vec!["spiffe://evil.example/ns/billing/sa/billing"],
            "wrong trust domain",
        ),
    ] {
        let mut client = connect(pki.issue(&[], &uris)).await;
        let status = client
            .list_intents(proto::ListIntentsRequest {})
            .await
            .expect_err(why);
        assert_eq!(status.code(), Code::Unauthenticated, "{why}: {status:?}");
    }
    let _ = app.1.send(());
}

/// Starts a TLS gateway; returns its address and a stop switch.
async fn spawn_app_with_tls(
    emulator: TestEmulator,
    config: &str,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    TestEmulator,
) {
    let env = |name: &str| (name == "WORKOS_API_KEY").then(|| API_KEY.to_owned());
    let audit = temp_path("tls-audit.log");
    let config = format!(
        "{config}\n[audit]\nfile = {:?}\n",
        audit.display().to_string()
    );
    let config = portal_gateway::Config::load(&config, env).expect("valid tls config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(portal_gateway::run(listener, config, async {
        let _ = stopped.await;
    }));
    (addr, stop, emulator)
}

/// An EC P-256 signing key and its JWK.
pub(crate) struct JwtKey {
    pub(crate) key: EncodingKey,
    pub(crate) jwk: Value,
    public_pem: String,
    kid: String,
}

pub(crate) fn jwt_key(kid: &str) -> JwtKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let key = EncodingKey::from_ec_der(&pair.serialize_der());
    let raw = pair.public_key_raw();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
    });
    JwtKey {
        key,
        jwk,
        public_pem: pair.public_key_pem(),
        kid: kid.to_owned(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

pub(crate) fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "iss": "https://kubernetes.default.svc", "aud": "portal-gateway", "exp": now() + 600, "iat": now() })
}

pub(crate) fn sign(key: &JwtKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.key).expect("sign")
}

fn unsigned(header: Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

const SERVICE_ACCOUNT: &str = "system:serviceaccount:billing:billing";

fn jwt_rule() -> String {
    format!(
        "[[policy.callers]]\nname = \"billing\"\nidentities = [\"jwt:{SERVICE_ACCOUNT}\"]\nintents = [\"*\"]\nrpcs = [\"ListIntents\"]\norganizations = [\"*\"]\n"
    )
}

pub(crate) fn jwt_config(emulator_url: &str, jwks: &str) -> String {
    let auth = format!(
        "[auth.jwt]\n{jwks}\nissuer = \"https://kubernetes.default.svc\"\naudience = \"portal-gateway\"\nalgorithms = [\"ES256\"]\nleeway = \"5s\"\nrefresh_interval = \"60s\"\n"
    );
    // `[auth.jwt]` goes after `[auth]`'s keys and before the policy tables.
    base_config(emulator_url).replacen(
        "[[policy.callers]]",
        &format!("{auth}[[policy.callers]]"),
        1,
    ) + &jwt_rule()
}

#[tokio::test]
async fn jwt_attacks_are_all_unauthenticated() {
    let key = jwt_key("k1");
    let jwks_path = temp_path("jwks.json");
    std::fs::write(&jwks_path, json!({ "keys": [key.jwk] }).to_string()).expect("jwks");
    let emulator = TestEmulator::start().await;
    let config = jwt_config(
        &emulator.url,
        &format!("jwks_file = {:?}", jwks_path.display().to_string()),
    );
    let app = spawn_app_with(emulator, &config, API_KEY).await;
    let try_token = |token: String| {
        let mut portal = app.as_token(&token).portal;
        async move { portal.list_intents(proto::ListIntentsRequest {}).await }
    };
    try_token(sign(&key, &claims(SERVICE_ACCOUNT)))
        .await
        .expect("a valid service-account token");

    let other_key = jwt_key("k1");
    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some("k1".into());
    let key_confusion = jsonwebtoken::encode(
        &hs256,
        &claims(SERVICE_ACCOUNT),
        &EncodingKey::from_secret(key.public_pem.as_bytes()).expect("hmac key"),
    )
    .expect("hs256");
    let mut wrong_aud = claims(SERVICE_ACCOUNT);
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims(SERVICE_ACCOUNT);
    wrong_iss["iss"] = json!("https://evil.example");
    let mut expired = claims(SERVICE_ACCOUNT);
    expired["exp"] = json!(now() - 3600);
    let mut not_yet = claims(SERVICE_ACCOUNT);
    not_yet["nbf"] = json!(now() + 3600);
    let mut string_exp = claims(SERVICE_ACCOUNT);
    string_exp["exp"] = json!("99999999999");
    let mut string_nbf = claims(SERVICE_ACCOUNT);
    string_nbf["nbf"] = json!("99999999999");
    let mut no_exp = claims(SERVICE_ACCOUNT);
    no_exp.as_object_mut().expect("object").remove("exp");
    let unknown_kid = JwtKey {
        kid: "k-unknown".into(),
        ..jwt_key("k-unknown")
    };
    let valid = sign(&key, &claims(SERVICE_ACCOUNT));
    let tampered = {
        let parts: Vec<&str> = valid.split('.').collect();
        let mut forged = claims(SERVICE_ACCOUNT);
        forged["sub"] = json!("system:serviceaccount:kube-system:admin");
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(forged.to_string()),
            parts[2]
        )
    };
    let attacks = [
        (
            "alg none",
            unsigned(
                json!({"alg": "none", "typ": "JWT", "kid": "k1"}),
                &claims(SERVICE_ACCOUNT),
            ),
        ),
        (
            "alg None",
            unsigned(
                json!({"alg": "None", "kid": "k1"}),
                &claims(SERVICE_ACCOUNT),
            ),
        ),
        ("HS256 signed with the public key", key_confusion),
        (
            "signed by another key with the same kid",
            sign(&other_key, &claims(SERVICE_ACCOUNT)),
        ),
        ("wrong audience", sign(&key, &wrong_aud)),
        ("wrong issuer", sign(&key, &wrong_iss)),
        ("expired", sign(&key, &expired)),
        ("not yet valid", sign(&key, &not_yet)),
        ("exp as a string", sign(&key, &string_exp)),
        ("nbf as a string", sign(&key, &string_nbf)),
        ("no exp", sign(&key, &no_exp)),
        ("unknown kid", sign(&unknown_kid, &claims(SERVICE_ACCOUNT))),
        ("tampered payload", tampered),
        ("garbage", "a.b.c".to_owned()),
    ];
    for (attack, token) in attacks {
        let status = try_token(token).await.expect_err(attack);
        assert_eq!(status.code(), Code::Unauthenticated, "{attack}: {status:?}");
        assert_eq!(reason(&status), "INVALID_JWT", "{attack}");
    }
}

#[tokio::test]
async fn unknown_key_ids_refresh_the_jwks_at_most_once_per_interval() {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    };
    let first = jwt_key("k1");
    let rotated = jwt_key("k2");
    let keys = Arc::new(Mutex::new(json!({ "keys": [first.jwk] })));
    let fetches = Arc::new(AtomicUsize::new(0));
    let served = (keys.clone(), fetches.clone());
    let jwks_app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (keys, fetches) = served.clone();
            async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                let body = keys.lock().expect("lock").to_string();
                ([("content-type", "application/json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let jwks_url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, jwks_app).await });
    let emulator = TestEmulator::start().await;
    let config = jwt_config(&emulator.url, &format!("jwks_url = {jwks_url:?}"));
    let app = spawn_app_with(emulator, &config, API_KEY).await;
    wait_until(|| async { fetches.load(Ordering::SeqCst) == 1 }).await;
    // The key rotates: the first token signed with the new key triggers one refresh and passes.
    keys.lock().expect("lock")["keys"] = json!([first.jwk, rotated.jwk]);
    let mut portal = app
        .as_token(&sign(&rotated, &claims(SERVICE_ACCOUNT)))
        .portal;
    portal
        .list_intents(proto::ListIntentsRequest {})
        .await
        .expect("the rotated key is fetched on its first use");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    // A flood of made-up key ids causes no more fetches within the interval.
    for i in 0..20 {
        let bogus = jwt_key(&format!("bogus-{i}"));
        let status = app
            .as_token(&sign(&bogus, &claims(SERVICE_ACCOUNT)))
            .portal
            .list_intents(proto::ListIntentsRequest {})
            .await
            .expect_err("unknown kid");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "refreshes are rate-limited"
    );
}

#[tokio::test]
async fn audit_records_each_mint_mutation_and_denial_without_secrets() {
    let emulator = TestEmulator::start().await;
    let config = restricted_config(
        &emulator.url,
        &[("billing", "billing-token-canary")],
        BILLING_RULE,
    );
    let app = spawn_app_with(emulator, &config, API_KEY).await;
    let acme = create_org(&app, "Acme EU", "acme-eu").await;
    let billing = app.clients(Credentials {
        token: Some("billing-token-canary".into()),
        acting_user: Some("it-admin@acme.example".into()),
        headers: vec![("x-request-id", "req-audit-1".into())],
    });
    let request = proto::GenerateLinkRequest {
        organization: Some(proto::generate_link_request::Organization::ExternalId(
            "acme-eu".into(),
        )),
        intent: Intent::Dsync as i32,
        return_url: "https://billing.example.com/settings/dsync".into(),
        ..Default::default()
    };
    let link = billing
        .portal
        .clone()
        .generate_link(request.clone())
        .await
        .expect("mint")
        .into_inner()
        .portal_link
        .expect("link")
        .link;
    let denied = proto::GenerateLinkRequest {
        intent: Intent::AuditLogs as i32,
        ..request
    };
    billing
        .portal
        .clone()
        .generate_link(denied)
        .await
        .expect_err("denied");
    billing
        .orgs
        .clone()
        .get_organization(by_id(&acme))
        .await
        .expect("reads are not audited");
    let records = app.audit_records();
    assert_eq!(
        records.len(),
        3,
        "admin create, billing mint, billing denial: {records:#?}"
    );
    let mint = &records[1];
    assert_eq!(mint["rpc"], "GenerateLink");
    assert_eq!(mint["outcome"], "OK");
    assert_eq!(mint["caller"], "token:billing");
    assert_eq!(mint["proof"], "static_token");
    assert_eq!(mint["acting_user"], "it-admin@acme.example");
    assert_eq!(mint["organization_id"], acme.as_str());
    assert_eq!(mint["external_id"], "acme-eu");
    assert_eq!(mint["intent"], "dsync");
    assert_eq!(mint["return_origin"], "https://billing.example.com");
    assert_eq!(mint["request_id"], "req-audit-1");
    assert!(
        mint["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:"))
    );
    assert_eq!(
        mint["link_fingerprint"],
        portal_gateway::auth::audit::fingerprint(&link).as_str()
    );
    assert!(mint["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    let denial = &records[2];
    assert_eq!(
        (denial["outcome"].as_str(), denial["reason"].as_str()),
        (Some("PERMISSION_DENIED"), Some("INTENT_NOT_ALLOWED"))
    );
    let text = std::fs::read_to_string(&app.audit_path).expect("audit");
    let secret = link.split("secret=").nth(1).expect("link secret");
    for leak in [
        link.as_str(),
        secret,
        "billing-token-canary",
        ADMIN_TOKEN,
        API_KEY,
    ] {
        assert!(!text.contains(leak), "{leak:?} leaked into the audit trail");
    }
}

#[tokio::test]
async fn same_request_id_from_two_callers_creates_two_organizations() {
    let emulator = TestEmulator::start().await;
    let rule = "[[policy.callers]]\nname = \"other\"\nidentities = [\"token:other\"]\nrpcs = [\"*\"]\nintents = [\"*\"]\norganizations = [\"*\"]\n";
    let config = restricted_config(&emulator.url, &[("other", "other-token")], rule);
    let app = spawn_app_with(emulator, &config, API_KEY).await;
    let request = proto::CreateOrganizationRequest {
        name: "Same".into(),
        request_id: "1".into(),
        ..Default::default()
    };
    let a = app
        .orgs
        .clone()
        .create_organization(request.clone())
        .await
        .expect("admin")
        .into_inner();
    let b = app
        .as_token("other-token")
        .orgs
        .create_organization(request)
        .await
        .expect("other")
        .into_inner();
    assert_ne!(a.organization.expect("a").id, b.organization.expect("b").id);
}

#[tokio::test]
async fn policy_files_reload_on_change_and_bad_ones_are_refused() {
    let policy_path = temp_path("policy.toml");
    let admin_rule = "reload_interval = \"50ms\"\n[[callers]]\nname = \"admin\"\nidentities = [\"token:admin\"]\nrpcs = [\"*\"]\nintents = [\"*\"]\norganizations = [\"*\"]\n";
    std::fs::write(&policy_path, admin_rule).expect("policy");
    let emulator = TestEmulator::start().await;
    // The same configuration, with the inline policy replaced by a reloadable policy file.
    let config = restricted_config(&emulator.url, &[("late", "late-token")], "");
    let inline = config.find("[[policy.callers]]").expect("inline policy");
    let config = format!(
        "policy_file = {:?}\n{}",
        policy_path.display().to_string(),
        &config[..inline]
    );
    let app = spawn_app_with(emulator, &config, API_KEY).await;
    let late = || {
        let mut portal = app.as_token("late-token").portal;
        async move { portal.list_intents(proto::ListIntentsRequest {}).await }
    };
    assert_eq!(
        late().await.expect_err("not yet").code(),
        Code::PermissionDenied
    );
    let with_late = format!(
        "{admin_rule}[[callers]]\nname = \"late\"\nidentities = [\"token:late\"]\nintents = [\"*\"]\nrpcs = [\"ListIntents\"]\norganizations = [\"*\"]\n"
    );
    std::fs::write(&policy_path, &with_late).expect("policy");
    wait_until(|| async { late().await.is_ok() }).await;
    std::fs::write(&policy_path, format!("{with_late}[[callers]]\nname = \"broken\"\nidentities = [\"token:late\"]\nintents = [\"*\"]\nrpcs = [\"Nope\"]\n")).expect("policy");
    // The broken file is refused: poll across several reload intervals that access is unchanged.
    for _ in 0..10 {
        late().await.expect("the old policy stays in force");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    std::fs::write(&policy_path, admin_rule).expect("policy");
    wait_until(|| async { late().await.is_err() }).await;
}

#[tokio::test]
async fn probing_outside_ones_scope_costs_the_same_whether_or_not_the_organization_exists() {
    use portal_gateway::proto::{GetOrganizationRequest, get_organization_request};
    let emulator = crate::helpers::TestEmulator::start().await;
    let mut config =
        crate::helpers::config_with_tokens(&emulator.url, &[("scoped", "scoped-token")]);
    config.push_str(
        "\n[[policy.callers]]\nname = \"scoped\"\nidentities = [\"token:scoped\"]\nrpcs = [\"*\"]\nintents = [\"*\"]\norganizations = [\"external:mine-*\"]\n",
    );
    let app = crate::helpers::spawn_app_with(emulator, &config, crate::helpers::API_KEY).await;
    let existing = app
        .emulator
        .create_organization(serde_json::json!({"name": "Theirs", "external_id": "theirs"}))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let missing = "org_01JAAAAAAAAAAAAAAAAAAAAAAA".to_owned();
    let orgs = app
        .clients(crate::helpers::Credentials {
            token: Some("scoped-token".into()),
            ..Default::default()
        })
        .orgs;
    let probe = |id: String| {
        let request = GetOrganizationRequest {
            organization: Some(get_organization_request::Organization::Id(id)),
        };
        let mut orgs = orgs.clone();
        async move {
            orgs.get_organization(request)
                .await
                .expect_err("out of scope")
        }
    };
    // Both are denied alike, and each costs WorkOS one read however often it is probed: the
    // absence is remembered like the organization is.
    for id in [existing.clone(), missing.clone()] {
        for _ in 0..3 {
            let denied = probe(id.clone()).await;
            assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        }
    }
    assert_eq!(app.emulator.count("GET /organizations/{id}").await, 2);
}
