//! IT contacts and e-mailed invitations through gRPC: the flow against the emulator's outbox,
//! the one-active-invitation rule, and who may be invited, with hostile addresses refused before
//! any WorkOS call and every refusal audited without the address.

use portal_gateway::proto::{
    AddItContactRequest, InvitationIntent, InviteItContactRequest, ListItContactsRequest,
    RemoveItContactRequest, RevokeInvitationRequest, add_it_contact_request,
    invitation_service_client::InvitationServiceClient, invite_it_contact_request,
    list_it_contacts_request, remove_it_contact_request, revoke_invitation_request,
};
use serde_json::{Value, json};
use tonic::Code;

use crate::helpers::{
    API_KEY, Authed, Credentials, TestApp, TestEmulator, config_with_tokens, reason, spawn_app_with,
};

/// Three callers: one inviting at the organization's verified domains, one at listed domains,
/// one with no invite_email_domains.
async fn app() -> TestApp {
    let emulator = TestEmulator::start().await;
    let mut config = config_with_tokens(
        &emulator.url,
        &[
            ("verified", "verified-token"),
            ("listed", "listed-token"),
            ("nobody", "nobody-token"),
            ("inviter", "inviter-token"),
        ],
    );
    config.push_str(
        r#"
[[policy.callers]]
name = "verified"
identities = ["token:verified"]
rpcs = ["*"]
intents = ["*"]
organizations = ["*"]
invite_email_domains = ["organization"]

[[policy.callers]]
name = "listed"
identities = ["token:listed"]
rpcs = ["*"]
intents = ["*"]
organizations = ["*"]
invite_email_domains = ["acme.example", "*.acme.example"]

[[policy.callers]]
name = "nobody"
identities = ["token:nobody"]
rpcs = ["*"]
intents = ["*"]
organizations = ["*"]

[[policy.callers]]
name = "inviter"
identities = ["token:inviter"]
intents = ["*"]
rpcs = ["InviteItContact"]
organizations = ["*"]
invite_email_domains = ["acme.example"]
"#,
    );
    spawn_app_with(emulator, &config, API_KEY).await
}

fn client(app: &TestApp, token: &str) -> InvitationServiceClient<Authed> {
    app.clients(Credentials {
        token: Some(token.into()),
        ..Credentials::default()
    })
    .invitations
}

/// An organization with a verified and a pending domain; returns its id.
async fn organization(app: &TestApp) -> String {
    let org = app
        .emulator
        .create_organization(json!({
            "name": "Acme",
            "external_id": "acme",
            "domain_data": [
                {"domain": "acme.example", "state": "verified"},
                {"domain": "pending.example", "state": "pending"},
            ],
        }))
        .await;
    org["id"].as_str().expect("id").to_owned()
}

fn invite(id: &str, email: &str, replace_active: bool) -> InviteItContactRequest {
    InviteItContactRequest {
        organization: Some(invite_it_contact_request::Organization::OrganizationId(
            id.to_owned(),
        )),
        email: email.to_owned(),
        intents: vec![
            InvitationIntent::Sso as i32,
            InvitationIntent::DirectorySync as i32,
        ],
        replace_active,
    }
}

async fn outbox(app: &TestApp) -> Vec<Value> {
    app.emulator
        .control(reqwest::Method::GET, "/outbox", None)
        .await["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn page_status(app: &TestApp, link: &str) -> u16 {
    app.emulator
        .http
        .get(link)
        .send()
        .await
        .expect("open the link")
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_admin_at_a_verified_domain_is_invited_once_until_revoked_or_replaced() {
    let app = app().await;
    let id = organization(&app).await;
    let mut verified = client(&app, "verified-token");

    let first = verified
        .invite_it_contact(invite(&id, "IT-Admin@Acme.Example", false))
        .await
        .expect("invited")
        .into_inner();
    assert!(first.contact_created);
    assert!(!first.replaced_active);
    let contact = first.it_contact.expect("contact");
    assert_eq!(
        contact.email, "it-admin@acme.example",
        "sent in canonical form"
    );
    let sent = outbox(&app).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["to"], "it-admin@acme.example");
    let first_link = sent[0]["link"].as_str().expect("link").to_owned();
    assert_eq!(page_status(&app, &first_link).await, 200);

    // One active invitation per organization.
    let refused = verified
        .invite_it_contact(invite(&id, "it-admin@acme.example", false))
        .await
        .expect_err("a second invitation");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "INVITATION_ALREADY_ACTIVE");
    assert!(
        refused.message().contains("replace_active"),
        "{}",
        refused.message()
    );

    // Replacing revokes the first in the same step.
    let replaced = verified
        .invite_it_contact(invite(&id, "it-admin@acme.example", true))
        .await
        .expect("replaced")
        .into_inner();
    assert!(replaced.replaced_active);
    assert!(!replaced.contact_created);
    assert_eq!(page_status(&app, &first_link).await, 410);
    let second_link = outbox(&app).await[1]["link"]
        .as_str()
        .expect("link")
        .to_owned();
    assert_eq!(page_status(&app, &second_link).await, 200);

    // Revoked, then invited again without replacing.
    verified
        .revoke_invitation(RevokeInvitationRequest {
            organization: Some(revoke_invitation_request::Organization::OrganizationId(
                id.clone(),
            )),
            email: "it-admin@acme.example".into(),
        })
        .await
        .expect("revoked");
    assert_eq!(page_status(&app, &second_link).await, 410);
    verified
        .invite_it_contact(invite(&id, "it-admin@acme.example", false))
        .await
        .expect("invited again");
    let third_link = outbox(&app).await[2]["link"]
        .as_str()
        .expect("link")
        .to_owned();

    // Contacts: listed; adding is idempotent; removing one cuts its link.
    let added = verified
        .add_it_contact(AddItContactRequest {
            organization: Some(add_it_contact_request::Organization::ExternalId(
                "acme".into(),
            )),
            email: "second@acme.example".into(),
        })
        .await
        .expect("added")
        .into_inner();
    assert!(added.created);
    let again = verified
        .add_it_contact(AddItContactRequest {
            organization: Some(add_it_contact_request::Organization::ExternalId(
                "acme".into(),
            )),
            email: "SECOND@acme.example".into(),
        })
        .await
        .expect("added again")
        .into_inner();
    assert!(!again.created);
    let listed = verified
        .list_it_contacts(ListItContactsRequest {
            organization: Some(list_it_contacts_request::Organization::OrganizationId(
                id.clone(),
            )),
        })
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.it_contacts.len(), 2);
    verified
        .remove_it_contact(RemoveItContactRequest {
            organization: Some(remove_it_contact_request::Organization::OrganizationId(
                id.clone(),
            )),
            email: "it-admin@acme.example".into(),
        })
        .await
        .expect("removed");
    assert_eq!(page_status(&app, &third_link).await, 410);

    // Every step is audited with the domain and a fingerprint, never the address.
    let audit = std::fs::read_to_string(&app.audit_path).expect("audit");
    assert!(!audit.contains("it-admin@"), "an address reached the audit");
    let records = app.audit_records();
    let invites: Vec<&Value> = records
        .iter()
        .filter(|r| r["rpc"] == "InviteItContact")
        .collect();
    assert_eq!(invites.len(), 4);
    assert!(invites.iter().all(|r| {
        r["invitee_domain"] == "acme.example"
            && r["invitee_fingerprint"]
                .as_str()
                .is_some_and(|f| f.starts_with("sha256:"))
            && r["invitation_intents"] == json!(["sso", "directory_sync"])
    }));
    assert_eq!(invites[2]["replaced_active"], true);
    for rpc in ["AddItContact", "RemoveItContact", "RevokeInvitation"] {
        assert!(records.iter().any(|r| r["rpc"] == rpc), "{rpc} audited");
    }
}

#[tokio::test]
async fn hostile_and_outside_addresses_are_refused_before_any_workos_call() {
    let app = app().await;
    let id = organization(&app).await;
    let mut listed = client(&app, "listed-token");
    app.emulator
        .control(reqwest::Method::DELETE, "/requests", None)
        .await;
    for (address, code, why) in [
        (
            "it@acme.example.attacker.com",
            Code::PermissionDenied,
            "INVITEE_DOMAIN_NOT_ALLOWED",
        ),
        (
            "it@evilacme.example",
            Code::PermissionDenied,
            "INVITEE_DOMAIN_NOT_ALLOWED",
        ),
        (
            "it@аcme.example",
            Code::PermissionDenied,
            "INVITEE_DOMAIN_NOT_ALLOWED",
        ),
        (
            "it@xn--cme-8cd.example",
            Code::PermissionDenied,
            "INVITEE_DOMAIN_NOT_ALLOWED",
        ),
        (
            "\"it@acme.example\"@attacker.com",
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "it@attacker.com(acme.example)",
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "it@acme.example@attacker.com",
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "IT <it@acme.example>",
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "it@acme.example.",
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            "it@acme.example\u{202e}",
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
    ] {
        let error = listed
            .invite_it_contact(invite(&id, address, false))
            .await
            .expect_err(address);
        assert_eq!(error.code(), code, "{address:?}: {}", error.message());
        assert_eq!(reason(&error), why, "{address:?}");
    }
    assert_eq!(
        app.emulator.total_requests().await,
        0,
        "a refused invitation reached WorkOS"
    );
    // A subdomain the rule lists, with sub-addressing, goes through.
    listed
        .invite_it_contact(invite(&id, "it+sso@eu.acme.example", false))
        .await
        .expect("a listed subdomain");

    // "organization": only its verified domains; the refusal names none of them.
    let mut verified = client(&app, "verified-token");
    app.emulator
        .control(reqwest::Method::DELETE, "/requests", None)
        .await;
    let error = verified
        .invite_it_contact(invite(&id, "it@pending.example", true))
        .await
        .expect_err("an unverified domain of the organization itself");
    assert_eq!(error.code(), Code::PermissionDenied);
    assert_eq!(reason(&error), "INVITEE_DOMAIN_NOT_VERIFIED");
    assert!(
        !error.message().contains("acme.example"),
        "{}",
        error.message()
    );
    assert_eq!(
        app.emulator
            .count("POST /organizations/{id}/it_contacts")
            .await,
        0
    );
    // A rule without invite_email_domains invites nobody.
    let error = client(&app, "nobody-token")
        .invite_it_contact(invite(&id, "it@acme.example", false))
        .await
        .expect_err("nobody");
    assert_eq!(reason(&error), "INVITE_DOMAINS_NOT_CONFIGURED");

    // Each refusal is audited, with the domain and a fingerprint of what was sent.
    let records = app.audit_records();
    let refusals: Vec<&Value> = records
        .iter()
        .filter(|r| r["rpc"] == "InviteItContact" && r["outcome"] != "OK")
        .collect();
    assert_eq!(refusals.len(), 12, "{refusals:?}");
    // The domain is kept when the address has one; never the address.
    assert!(refusals.iter().all(|r| r["invitee_fingerprint"].is_string()
        && (r["invitee_domain"].is_null() || r["invitee_domain"].is_string())));
    let with_domain = refusals
        .iter()
        .filter(|r| r["invitee_domain"].is_string())
        .count();
    assert!(with_domain >= 8, "{refusals:?}");
    let audit = std::fs::read_to_string(&app.audit_path).expect("audit");
    assert!(!audit.contains("it@"), "an address reached the audit");
}

#[tokio::test]
async fn replacing_an_invitation_needs_the_right_to_revoke_one() {
    let app = app().await;
    let id = organization(&app).await;
    client(&app, "verified-token")
        .invite_it_contact(invite(&id, "first@acme.example", false))
        .await
        .expect("the first invitation");
    let mut inviter = client(&app, "inviter-token");
    let error = inviter
        .invite_it_contact(invite(&id, "second@acme.example", true))
        .await
        .expect_err("replace_active revokes: RevokeInvitation is not in the rule");
    assert_eq!(error.code(), Code::PermissionDenied);
    assert_eq!(reason(&error), "RPC_NOT_ALLOWED");
    let first_link = outbox(&app).await[0]["link"]
        .as_str()
        .expect("link")
        .to_owned();
    assert_eq!(page_status(&app, &first_link).await, 200, "still active");
}

#[tokio::test]
async fn an_invitation_and_a_contact_whose_answers_were_lost_are_settled_or_reported() {
    let app = app().await;
    let id = organization(&app).await;
    // The contact's answer is lost: found by address, it is this call's.
    app.emulator
        .fault(json!({"route": "POST /organizations/{id}/it_contacts", "status": 500, "after_commit": true, "count": 1}))
        .await;
    let invited = client(&app, "verified-token")
        .invite_it_contact(invite(&id, "ada@acme.example", false))
        .await
        .expect("the lost contact answer settled")
        .into_inner();
    assert!(invited.contact_created, "this call added the contact");
    assert_eq!(
        app.emulator
            .count("POST /organizations/{id}/it_contacts")
            .await,
        1,
        "the contact was never added twice"
    );
    // An invitation lost before it was made goes out on the second sending.
    let route = "POST /organizations/{id}/it_contacts/{contact_id}/invite";
    let revoke = || {
        let mut invitations = client(&app, "verified-token");
        let request = RevokeInvitationRequest {
            organization: Some(revoke_invitation_request::Organization::OrganizationId(
                id.clone(),
            )),
            email: "ada@acme.example".into(),
        };
        async move {
            invitations
                .revoke_invitation(request)
                .await
                .expect("revoked")
        }
    };
    revoke().await;
    app.emulator
        .fault(json!({"route": route, "status": 502, "count": 1}))
        .await;
    client(&app, "verified-token")
        .invite_it_contact(invite(&id, "ada@acme.example", false))
        .await
        .expect("sent the second time");
    assert_eq!(outbox(&app).await.len(), 2);
    // One made whose answer was lost: an active invitation now, but nothing says it is this
    // call's, so the caller hears the outcome is unknown, and nothing is mailed twice.
    revoke().await;
    app.emulator
        .fault(json!({"route": route, "status": 500, "after_commit": true, "count": 1}))
        .await;
    let status = client(&app, "verified-token")
        .invite_it_contact(invite(&id, "ada@acme.example", false))
        .await
        .expect_err("unknown");
    assert_eq!(reason(&status), "WORKOS_OUTCOME_UNKNOWN");
    assert_eq!(outbox(&app).await.len(), 3, "mailed once");
}
