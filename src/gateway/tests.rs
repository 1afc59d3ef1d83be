//! The core's use cases, driven without tonic: a [`Gateway`] over the WorkOS client, talking to
//! the in-process emulator on a loopback port.

use std::{collections::BTreeSet, time::Duration};

use tokio::{net::TcpListener, sync::oneshot, time::Instant};

use super::*;
use crate::{
    auth::{
        identity::Proof,
        policy::{OrganizationScope, OriginRule, Pattern, Policy, Rpc, Rule},
    },
    domain::{
        ExternalId, LinkRequest, Metadata, NewOrganization, Organization, OrganizationId,
        OrganizationRef,
    },
    emulator,
};

const KEY: &str = "sk_test_core_unit";

struct Harness {
    gateway: Gateway,
    _stop: oneshot::Sender<()>,
}

async fn harness(rules: Vec<Rule>) -> Harness {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let emulator_url = emulator::origin_of(listener.local_addr().expect("address"));
    let (stop, stopped) = oneshot::channel::<()>();
    let options = emulator::Options {
        api_key: KEY.into(),
        seed: Some(7),
    };
    tokio::spawn(emulator::serve(listener, options, async {
        let _ = stopped.await;
    }));
    let settings = workos::Settings::new(
        url::Url::parse(&emulator_url).expect("url"),
        secrecy::SecretString::from(KEY),
    );
    let client = workos::Client::new(&settings, std::sync::Arc::new(())).expect("client");
    let gateway = Gateway::new(
        client,
        PortalSettings::default(),
        PolicyStore::new(Policy { rules }),
    );
    Harness {
        gateway,
        _stop: stop,
    }
}

fn rule(identity: &str, organizations: OrganizationScope) -> Rule {
    Rule {
        name: identity.to_owned(),
        identities: BTreeSet::from([identity.to_owned()]),
        rpcs: None,
        intents: None,
        organizations,
        return_origins: vec![OriginRule::Any],
        require_acting_user: false,
        requests_per_minute: None,
        max_watchers: crate::auth::policy::DEFAULT_MAX_WATCHERS,
        invite_email_domains: Default::default(),
    }
}

fn external_scope(pattern: &str) -> OrganizationScope {
    OrganizationScope::Listed {
        ids: BTreeSet::new(),
        external_ids: vec![Pattern::new(pattern)],
    }
}

impl Harness {
    fn call(&self, identity: &str, rpc: Rpc, acting_user: Option<&str>) -> Call {
        let caller = Caller {
            identity: identity.to_owned(),
            proof: Proof::StaticToken,
        };
        let setup = CallSetup {
            deadline: Instant::now() + Duration::from_secs(10),
            request_id: format!("{identity}-request"),
            traceparent: None,
            acting_user: acting_user.map(str::to_owned),
        };
        let facts = AuditEntry::new(rpc, &setup.request_id, None);
        self.gateway.begin(caller, setup, facts)
    }

    async fn create(&self, identity: &str, external_id: &str, request_id: &str) -> Organization {
        let mut call = self.call(identity, Rpc::CreateOrganization, None);
        let new = NewOrganization {
            name: format!("Org {external_id}"),
            domains: Vec::new(),
            metadata: Metadata::default(),
            external_id: Some(ExternalId::parse(external_id).expect("external id")),
            idempotency_key: request_id.to_owned(),
            caller_chose_key: true,
        };
        self.gateway
            .create_organization(&mut call, new)
            .await
            .expect("created")
    }

    fn link_request(&self, organization: OrganizationRef) -> LinkRequest {
        LinkRequest {
            organization,
            intent: Intent::Sso,
            return_url: None,
            success_url: None,
            external_user_id: None,
            it_contact_emails: Vec::new(),
        }
    }
}

#[tokio::test]
async fn the_acting_user_becomes_the_links_external_user_id_so_revoking_them_cuts_the_link() {
    let harness = harness(vec![rule("billing", OrganizationScope::All)]).await;
    let organization = harness.create("billing", "acme", "r1").await;
    let mut call = harness.call("billing", Rpc::GenerateLink, Some("alice@acme.test"));
    let link = harness
        .gateway
        .generate_link(
            &mut call,
            harness.link_request(OrganizationRef::Id(organization.id.clone())),
        )
        .await
        .expect("link");
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let status = |url: String| {
        let http = http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .expect("portal")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(link.link.clone()).await, 200, "the link works");
    // Revoking the acting user's links cuts this one: it was minted for them.
    let mut call = harness.call("billing", Rpc::RevokeLinks, None);
    let revoked_in = harness
        .gateway
        .revoke_links(
            &mut call,
            OrganizationRef::External(ExternalId::parse("acme").expect("id")),
            "alice@acme.test".into(),
        )
        .await
        .expect("revoked");
    assert_eq!(revoked_in, organization.id);
    assert_eq!(status(link.link).await, 410, "the link is revoked");
}

#[tokio::test]
async fn audit_facts_name_the_resolved_organization_and_fingerprint_the_link() {
    let harness = harness(vec![rule("billing", OrganizationScope::All)]).await;
    let organization = harness.create("billing", "globex", "r1").await;
    let mut call = harness.call("billing", Rpc::GenerateLink, Some("bob"));
    let link = harness
        .gateway
        .generate_link(
            &mut call,
            harness.link_request(OrganizationRef::External(
                ExternalId::parse("globex").expect("id"),
            )),
        )
        .await
        .expect("link");
    let (facts, workos_request_id) = call.finish();
    assert!(workos_request_id.is_some(), "WorkOS's request id is kept");
    let record = facts
        .finish(tonic::Code::Ok, None, false)
        .expect("a minted link is always audited");
    assert_eq!(record.caller.as_deref(), Some("billing"));
    assert_eq!(record.acting_user.as_deref(), Some("bob"));
    assert_eq!(
        record.external_user_id.as_deref(),
        Some("bob"),
        "the acting user is the link's external user"
    );
    assert_eq!(
        record.organization_id.as_deref(),
        Some(organization.id.as_str())
    );
    assert_eq!(record.external_id.as_deref(), Some("globex"));
    assert_eq!(record.intent, Some("sso"));
    assert_eq!(
        record.link_fingerprint,
        Some(crate::auth::audit::fingerprint(&link.link))
    );
    let line = serde_json::to_string(&record).expect("json");
    assert!(
        !line.contains(&link.link),
        "the record never holds the link"
    );
}

#[tokio::test]
async fn an_organization_outside_the_callers_scope_is_denied_whether_or_not_it_exists() {
    let harness = harness(vec![
        rule("admin", OrganizationScope::All),
        rule("eu-team", external_scope("eu-*")),
    ])
    .await;
    let inside = harness.create("admin", "eu-acme", "r1").await;
    let outside = harness.create("admin", "us-acme", "r2").await;
    let missing = OrganizationId::parse("org_01EHWNCE74X7JSDV0X3SZ3KJNY").expect("id");
    let get = |organization: OrganizationRef| async {
        let mut call = harness.call("eu-team", Rpc::GetOrganization, None);
        harness
            .gateway
            .get_organization(&mut call, organization)
            .await
    };
    // By id, the rule's external-id pattern needs the organization: it is fetched and decided.
    let found = get(OrganizationRef::Id(inside.id.clone()))
        .await
        .expect("in scope");
    assert_eq!(found.id, inside.id);
    // Refused by id, the refusal names the id asked for, never the external id it looked up.
    let refused = get(OrganizationRef::Id(outside.id.clone()))
        .await
        .expect_err("out of scope");
    assert!(
        refused.to_string().contains(outside.id.as_str()),
        "{refused}"
    );
    assert!(!refused.to_string().contains("us-acme"), "{refused}");
    for denied in [
        OrganizationRef::Id(outside.id.clone()),
        OrganizationRef::Id(missing),
        OrganizationRef::External(ExternalId::parse("us-acme").expect("id")),
        OrganizationRef::External(ExternalId::parse("us-nobody").expect("id")),
    ] {
        let error = get(denied.clone()).await.expect_err("out of scope");
        assert_eq!(error.reason(), "ORGANIZATION_NOT_ALLOWED", "{denied}");
    }
    // An unknown caller learns nothing either.
    let mut call = harness.call("stranger", Rpc::GetOrganization, None);
    let error = harness
        .gateway
        .get_organization(&mut call, OrganizationRef::Id(inside.id))
        .await
        .expect_err("unknown caller");
    assert_eq!(error.reason(), "UNKNOWN_CALLER");
}

#[tokio::test]
async fn two_callers_with_the_same_request_id_never_share_an_organization() {
    let harness = harness(vec![
        rule("a", OrganizationScope::All),
        rule("b", OrganizationScope::All),
    ])
    .await;
    let first = harness.create("a", "shared-1", "same-request").await;
    let replay = harness.create("a", "shared-1", "same-request").await;
    assert_eq!(
        first.id, replay.id,
        "a caller's retry replays its own create"
    );
    let mut call = harness.call("b", Rpc::CreateOrganization, None);
    let other = harness
        .gateway
        .create_organization(
            &mut call,
            NewOrganization {
                name: "Org b".into(),
                domains: Vec::new(),
                metadata: Metadata::default(),
                external_id: Some(ExternalId::parse("shared-2").expect("id")),
                idempotency_key: "same-request".into(),
                caller_chose_key: true,
            },
        )
        .await
        .expect("b's own organization");
    assert_ne!(other.id, first.id);
    assert_ne!(
        scoped_idempotency_key("a", "same-request"),
        scoped_idempotency_key("b", "same-request")
    );
}

#[tokio::test]
async fn a_url_outside_the_callers_origins_is_refused_before_any_upstream_call() {
    let mut strict = rule("strict", OrganizationScope::All);
    strict.return_origins = Vec::new();
    let harness = harness(vec![strict]).await;
    let mut request = harness.link_request(OrganizationRef::External(
        ExternalId::parse("nowhere").expect("id"),
    ));
    request.return_url = Some(RedirectUrl::parse("https://evil.example/", false).expect("url"));
    let mut call = harness.call("strict", Rpc::GenerateLink, None);
    let error = harness
        .gateway
        .generate_link(&mut call, request)
        .await
        .expect_err("refused");
    assert_eq!(error.reason(), "RETURN_URL_NOT_ALLOWED");
    assert!(matches!(
        error,
        Error::Denied {
            field: Some("return_url"),
            ..
        }
    ));
    let (_, workos_request_id) = call.finish();
    assert_eq!(workos_request_id, None, "WorkOS was never asked");
}

#[tokio::test]
async fn a_caller_scoped_by_external_ids_cannot_move_or_clear_an_organization_out_of_its_scope() {
    let harness = harness(vec![
        rule("admin", OrganizationScope::All),
        rule("eu-team", external_scope("eu-*")),
    ])
    .await;
    let organization = harness.create("admin", "eu-acme", "r1").await;
    let update = |external_id: Option<ExternalId>| async {
        let mut call = harness.call("eu-team", Rpc::UpdateOrganization, None);
        let changes = crate::domain::OrganizationChanges {
            external_id: Some(external_id),
            ..Default::default()
        };
        harness
            .gateway
            .update_organization(&mut call, organization.id.clone(), changes)
            .await
    };
    for escape in [None, Some(ExternalId::parse("us-acme").expect("id"))] {
        let error = update(escape.clone()).await.expect_err("out of scope");
        assert_eq!(error.reason(), "ORGANIZATION_NOT_ALLOWED", "{escape:?}");
    }
    let renamed = update(Some(ExternalId::parse("eu-acme-2").expect("id")))
        .await
        .expect("still in scope");
    assert_eq!(renamed.external_id.as_deref(), Some("eu-acme-2"));
}

#[tokio::test]
async fn a_link_for_another_external_user_than_the_acting_one_records_both() {
    let harness = harness(vec![rule("billing", OrganizationScope::All)]).await;
    harness.create("billing", "initech", "r1").await;
    let mut call = harness.call("billing", Rpc::GenerateLink, Some("alice"));
    let mut request = harness.link_request(OrganizationRef::External(
        ExternalId::parse("initech").expect("id"),
    ));
    request.external_user_id = Some("it-admin-42".into());
    harness
        .gateway
        .generate_link(&mut call, request)
        .await
        .expect("link");
    let (facts, _) = call.finish();
    let record = facts.finish(tonic::Code::Ok, None, false).expect("audited");
    assert_eq!(record.acting_user.as_deref(), Some("alice"));
    assert_eq!(record.external_user_id.as_deref(), Some("it-admin-42"));
}

#[tokio::test]
async fn a_watch_ends_when_a_policy_reload_takes_the_callers_rights_away() {
    let h = harness(vec![
        rule("watcher", OrganizationScope::All),
        rule("admin", OrganizationScope::All),
    ])
    .await;
    let organization = h.create("admin", "watched", "create-watched").await;
    let mut call = h.call("watcher", Rpc::WatchSetup, None);
    let mut watch = h
        .gateway
        .watch_setup(
            &mut call,
            OrganizationRef::Id(organization.id.clone()),
            vec![Intent::Sso],
            None,
        )
        .await
        .expect("watch opens");
    assert!(matches!(
        watch.next().await,
        Ok(WatchMessage::Snapshot { .. })
    ));
    // The reload keeps the admin and drops the watcher.
    h.gateway.policy.replace(Policy {
        rules: vec![rule("admin", OrganizationScope::All)],
    });
    let ended = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the watch notices within its recheck interval");
    match ended {
        Err(error) => assert_eq!(error.reason(), "UNKNOWN_CALLER"),
        Ok(message) => panic!("a revoked caller still received {message:?}"),
    }
}
