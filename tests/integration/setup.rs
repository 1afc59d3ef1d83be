//! Setup status and the setup watch, through gRPC against the emulator: the per-intent states
//! from WorkOS's objects, the events stream with resume, resync, limits, scope and shutdown.

use std::time::Duration;

use portal_gateway::proto::{
    self, GetSetupStatusRequest, Intent, SetupState, SnapshotReason, WatchSetupRequest,
    WatchSetupResponse, get_setup_status_request, watch_setup_request,
};
use serde_json::{Value, json};
use tonic::{Code, Streaming};

use crate::helpers::{
    Credentials, TestApp, TestEmulator, config_with_tokens, reason, spawn_app, spawn_app_with,
    temp_path, wait_until,
};

/// Creates an organization with one pending domain; returns its id.
async fn organization(app: &TestApp, external_id: &str, domain: &str) -> String {
    let org = app
        .emulator
        .create_organization(json!({
            "name": format!("{external_id} Inc"),
            "external_id": external_id,
            "domain_data": [{"domain": domain, "state": "pending"}],
        }))
        .await;
    org["id"].as_str().expect("id").to_owned()
}

fn status_request(id: &str, intents: &[Intent]) -> GetSetupStatusRequest {
    GetSetupStatusRequest {
        organization: Some(get_setup_status_request::Organization::OrganizationId(
            id.to_owned(),
        )),
        intents: intents.iter().map(|i| *i as i32).collect(),
    }
}

fn watch_request(id: &str, intents: &[Intent], cursor: &str) -> WatchSetupRequest {
    WatchSetupRequest {
        organization: Some(watch_setup_request::Organization::OrganizationId(
            id.to_owned(),
        )),
        intents: intents.iter().map(|i| *i as i32).collect(),
        resume_cursor: cursor.to_owned(),
    }
}

/// Each intent's state, by intent.
async fn states(app: &TestApp, id: &str) -> Vec<(Intent, SetupState, String)> {
    let status = app
        .setup
        .clone()
        .get_setup_status(status_request(id, &[]))
        .await
        .expect("status")
        .into_inner()
        .status
        .expect("status");
    status
        .intents
        .into_iter()
        .map(|s| (s.intent(), s.state(), s.detail))
        .collect()
}

/// Skips to the event named `name` (a watch may first replay events from before it opened).
async fn until_event(
    stream: &mut Streaming<WatchSetupResponse>,
    name: &str,
) -> (SetupState, String) {
    loop {
        let (seen, state, cursor) = next_event(stream).await;
        if seen == name {
            return (state, cursor);
        }
    }
}

async fn state_of(app: &TestApp, id: &str, intent: Intent) -> SetupState {
    states(app, id)
        .await
        .into_iter()
        .find(|(i, _, _)| *i == intent)
        .map(|(_, state, _)| state)
        .expect("intent reported")
}

async fn next(stream: &mut Streaming<WatchSetupResponse>) -> WatchSetupResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a message within 10 s")
        .expect("no error")
        .expect("stream still open")
}

/// The next event message, with its intent's new state.
async fn next_event(stream: &mut Streaming<WatchSetupResponse>) -> (String, SetupState, String) {
    let message = next(stream).await;
    let event = message.event.expect("an event, not a snapshot");
    assert_eq!(message.intents.len(), 1, "the event's intent's state");
    (event.name, message.intents[0].state(), message.cursor)
}

#[tokio::test]
async fn status_follows_every_intent_through_workos_state() {
    let app = spawn_app().await;
    let id = organization(&app, "acme", "acme.example").await;
    let initial = states(&app, &id).await;
    let expected = [
        (Intent::Sso, SetupState::NotStarted),
        (Intent::Dsync, SetupState::NotStarted),
        (Intent::AuditLogs, SetupState::NotStarted),
        (Intent::LogStreams, SetupState::NotStarted),
        (Intent::DomainVerification, SetupState::InProgress),
        (Intent::CertificateRenewal, SetupState::NotStarted),
        (Intent::BringYourOwnKey, SetupState::Unknown),
    ];
    let got: Vec<_> = initial.iter().map(|(i, s, _)| (*i, *s)).collect();
    assert_eq!(got, expected, "{initial:?}");

    let steps: [(Value, Intent, SetupState); 13] = [
        (
            json!({"intent": "sso", "action": "configure"}),
            Intent::Sso,
            SetupState::InProgress,
        ),
        (
            json!({"intent": "sso", "action": "activate"}),
            Intent::Sso,
            SetupState::Complete,
        ),
        (
            json!({"intent": "dsync", "action": "activate"}),
            Intent::Dsync,
            SetupState::Complete,
        ),
        (
            json!({"intent": "dsync", "action": "invalid_credentials"}),
            Intent::Dsync,
            SetupState::NeedsAttention,
        ),
        (
            json!({"intent": "domain_verification", "action": "fail", "domain": "acme.example"}),
            Intent::DomainVerification,
            SetupState::NeedsAttention,
        ),
        (
            json!({"intent": "domain_verification", "action": "verify", "domain": "acme.example"}),
            Intent::DomainVerification,
            SetupState::Complete,
        ),
        (
            json!({"intent": "audit_logs", "action": "enable"}),
            Intent::AuditLogs,
            SetupState::Complete,
        ),
        (
            json!({"intent": "log_streams", "action": "create", "destination": "Datadog"}),
            Intent::LogStreams,
            SetupState::Complete,
        ),
        (
            json!({"intent": "log_streams", "action": "error"}),
            Intent::LogStreams,
            SetupState::NeedsAttention,
        ),
        (
            json!({"intent": "certificate_renewal", "action": "renewal_required"}),
            Intent::CertificateRenewal,
            SetupState::NeedsAttention,
        ),
        (
            json!({"intent": "certificate_renewal", "action": "renewed"}),
            Intent::CertificateRenewal,
            SetupState::Complete,
        ),
        (
            json!({"intent": "bring_your_own_key", "action": "verify", "verified": false}),
            Intent::BringYourOwnKey,
            SetupState::NeedsAttention,
        ),
        (
            json!({"intent": "bring_your_own_key", "action": "verify"}),
            Intent::BringYourOwnKey,
            SetupState::Complete,
        ),
    ];
    for (step, intent, expected) in steps {
        app.emulator.setup(&id, step.clone()).await;
        assert_eq!(state_of(&app, &id, intent).await, expected, "after {step}");
    }

    // The objects behind the states come with them.
    let status = app
        .setup
        .clone()
        .get_setup_status(status_request(&id, &[]))
        .await
        .expect("status")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(status.organization_id, id);
    assert_eq!(status.connections.len(), 1);
    assert_eq!(
        status.connections[0].state(),
        proto::ConnectionState::Active
    );
    assert_eq!(status.directories.len(), 1);
    assert_eq!(
        status.directories[0].state(),
        proto::DirectoryState::InvalidCredentials
    );
    assert_eq!(status.directories[0].state_raw, "invalid_credentials");
    assert_eq!(status.domains[0].domain, "acme.example");
    let stream = status
        .audit_log
        .and_then(|a| a.log_stream)
        .expect("log stream");
    assert_eq!(stream.state(), proto::LogStreamState::Error);
    assert_eq!(stream.stream_type, "Datadog");
}

#[tokio::test]
async fn status_makes_only_the_reads_the_intents_need_by_external_id() {
    let app = spawn_app().await;
    let id = organization(&app, "initech", "initech.example").await;
    app.emulator
        .control(reqwest::Method::DELETE, "/requests", None)
        .await;
    let response = app
        .setup
        .clone()
        .get_setup_status(GetSetupStatusRequest {
            organization: Some(get_setup_status_request::Organization::ExternalId(
                "initech".into(),
            )),
            intents: vec![Intent::Sso as i32],
        })
        .await
        .expect("status")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(response.organization_id, id);
    assert_eq!(response.intents.len(), 1);
    assert_eq!(app.emulator.count("GET /connections").await, 1);
    for untouched in [
        "GET /directories",
        "GET /events",
        "GET /organizations/{id}/audit_log_configuration",
    ] {
        assert_eq!(app.emulator.count(untouched).await, 0, "{untouched}");
    }
    // Bad input names its field.
    let error = app
        .setup
        .clone()
        .get_setup_status(status_request(&id, &[Intent::Unspecified]))
        .await
        .expect_err("unspecified intent");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("intents[0]"),
        "{}",
        error.message()
    );
    let error = app
        .setup
        .clone()
        .get_setup_status(status_request("org_01JAAAAAAAAAAAAAAAAAAAAAAA", &[]))
        .await
        .expect_err("unknown organization");
    assert_eq!(error.code(), Code::NotFound);
}

#[tokio::test]
async fn a_watch_sees_a_snapshot_then_each_event_with_the_new_state() {
    let app = spawn_app().await;
    let id = organization(&app, "globex", "globex.example").await;
    let mut stream = app
        .setup
        .clone()
        .watch_setup(watch_request(&id, &[], ""))
        .await
        .expect("watch")
        .into_inner();
    let first = next(&mut stream).await;
    assert_eq!(first.snapshot_reason(), SnapshotReason::Initial);
    assert!(first.event.is_none());
    assert_eq!(first.intents.len(), 7);
    assert!(first.status.is_some());

    app.emulator
        .setup(&id, json!({"intent": "sso", "action": "activate"}))
        .await;
    let (state, _) = until_event(&mut stream, "connection.activated").await;
    assert_eq!(state, SetupState::Complete);

    app.emulator
        .setup(
            &id,
            json!({"intent": "domain_verification", "action": "verify", "domain": "globex.example"}),
        )
        .await;
    let (state, _) = until_event(&mut stream, "organization_domain.verified").await;
    assert_eq!(state, SetupState::Complete);
    app.emulator
        .setup(
            &id,
            json!({"intent": "bring_your_own_key", "action": "verify"}),
        )
        .await;
    let (state, _) = until_event(&mut stream, "vault.byok_key.verification_completed").await;
    assert_eq!(state, SetupState::Complete);
    // Every intent with an event: directories and certificates too.
    app.emulator
        .setup(&id, json!({"intent": "dsync", "action": "activate"}))
        .await;
    let (state, _) = until_event(&mut stream, "dsync.activated").await;
    assert_eq!(state, SetupState::Complete);
    app.emulator
        .setup(
            &id,
            json!({"intent": "certificate_renewal", "action": "renewal_required"}),
        )
        .await;
    let (state, _) = until_event(&mut stream, "connection.saml_certificate_renewal_required").await;
    assert_eq!(state, SetupState::NeedsAttention);
    app.emulator
        .setup(
            &id,
            json!({"intent": "certificate_renewal", "action": "renewed"}),
        )
        .await;
    let (state, _) = until_event(&mut stream, "connection.saml_certificate_renewed").await;
    assert_eq!(state, SetupState::Complete);
}

#[tokio::test]
async fn a_watch_resumes_from_its_cursor_and_resyncs_from_one_too_old() {
    let app = spawn_app().await;
    let id = organization(&app, "hooli", "hooli.example").await;
    let other = organization(&app, "other", "other.example").await;
    let watch = |cursor: String| {
        let mut client = app.setup.clone();
        let request = watch_request(&id, &[Intent::Sso, Intent::BringYourOwnKey], &cursor);
        async move {
            client
                .watch_setup(request)
                .await
                .expect("watch")
                .into_inner()
        }
    };
    let mut stream = watch(String::new()).await;
    next(&mut stream).await;
    app.emulator
        .setup(&id, json!({"intent": "sso", "action": "activate"}))
        .await;
    let (_, _, cursor) = next_event(&mut stream).await;
    drop(stream);

    // Missed while away: an event for another organization (not for this watcher), and two
    // for this one. Another watcher keeps the poller reading meanwhile.
    let mut keeper = app
        .setup
        .clone()
        .watch_setup(watch_request(&other, &[Intent::Sso], ""))
        .await
        .expect("watch")
        .into_inner();
    next(&mut keeper).await;
    app.emulator
        .setup(&other, json!({"intent": "sso", "action": "activate"}))
        .await;
    app.emulator
        .setup(&id, json!({"intent": "sso", "action": "deactivate"}))
        .await;
    app.emulator
        .setup(
            &id,
            json!({"intent": "bring_your_own_key", "action": "verify", "verified": false}),
        )
        .await;
    next(&mut keeper).await;

    let mut resumed = watch(cursor).await;
    let (first, state, _) = next_event(&mut resumed).await;
    assert_eq!(
        (first.as_str(), state),
        ("connection.deactivated", SetupState::NeedsAttention)
    );
    let (second, state, _) = next_event(&mut resumed).await;
    assert_eq!(
        (second.as_str(), state),
        (
            "vault.byok_key.verification_completed",
            SetupState::NeedsAttention
        )
    );

    // A cursor the gateway never held: a RESYNC snapshot, then the stream goes on.
    let mut resynced = watch("a1.event_00000000000000000000000000".into()).await;
    let snapshot = next(&mut resynced).await;
    assert_eq!(snapshot.snapshot_reason(), SnapshotReason::Resync);
    app.emulator
        .setup(&id, json!({"intent": "sso", "action": "activate"}))
        .await;
    let (name, _, _) = next_event(&mut resynced).await;
    assert_eq!(name, "connection.activated");

    // A cursor the gateway did not make is a bad argument.
    let error = app
        .setup
        .clone()
        .watch_setup(watch_request(&id, &[], "a1.../../etc"))
        .await
        .expect_err("forged cursor");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("resume_cursor"),
        "{}",
        error.message()
    );
}

#[tokio::test]
async fn watches_opening_together_share_one_snapshot_read() {
    let app = spawn_app().await;
    let id = organization(&app, "umbrella", "umbrella.example").await;
    app.emulator
        .control(reqwest::Method::DELETE, "/requests", None)
        .await;
    let opens = (0..50).map(|_| {
        let mut client = app.setup.clone();
        let request = watch_request(&id, &[Intent::Sso], "");
        async move {
            let mut stream = client
                .watch_setup(request)
                .await
                .expect("watch")
                .into_inner();
            let first = next(&mut stream).await;
            assert_eq!(first.snapshot_reason(), SnapshotReason::Initial);
            stream
        }
    });
    let streams = futures_util::future::join_all(opens).await;
    assert_eq!(streams.len(), 50);
    assert_eq!(app.emulator.count("GET /connections").await, 1);
}

#[tokio::test]
async fn a_restricted_caller_watches_only_its_scope_within_its_limit() {
    let emulator = TestEmulator::start().await;
    let mut config = config_with_tokens(&emulator.url, &[("onboarding", "onboarding-token")]);
    config.push_str(
        r#"
[[policy.callers]]
name = "onboarding"
identities = ["token:onboarding"]
rpcs = ["GetSetupStatus", "WatchSetup"]
intents = ["sso"]
organizations = ["external:tenant-*"]
max_watchers = 2
"#,
    );
    let app = spawn_app_with(emulator, &config, crate::helpers::API_KEY).await;
    let mine = organization(&app, "tenant-1", "tenant1.example").await;
    let theirs = organization(&app, "competitor", "competitor.example").await;
    let clients = app.clients(Credentials {
        token: Some("onboarding-token".into()),
        ..Credentials::default()
    });

    // Only the intents the rule allows, whatever was asked.
    let status = clients
        .setup
        .clone()
        .get_setup_status(status_request(&mine, &[]))
        .await
        .expect("status")
        .into_inner()
        .status
        .expect("status");
    let intents: Vec<Intent> = status.intents.iter().map(|s| s.intent()).collect();
    assert_eq!(intents, [Intent::Sso]);
    let error = clients
        .setup
        .clone()
        .get_setup_status(status_request(&mine, &[Intent::Dsync]))
        .await
        .expect_err("intent outside the rule");
    assert_eq!(reason(&error), "INTENT_NOT_ALLOWED");

    // Out of scope: the same answer whether the organization exists or not.
    for id in [theirs.as_str(), "org_01JAAAAAAAAAAAAAAAAAAAAAAA"] {
        let error = clients
            .setup
            .clone()
            .watch_setup(watch_request(id, &[], ""))
            .await
            .expect_err("out of scope");
        assert_eq!(error.code(), Code::PermissionDenied);
        assert_eq!(reason(&error), "ORGANIZATION_NOT_ALLOWED");
        assert!(
            !error.message().contains("competitor"),
            "{}",
            error.message()
        );
    }

    let mut first = clients
        .setup
        .clone()
        .watch_setup(watch_request(&mine, &[], ""))
        .await
        .expect("first")
        .into_inner();
    next(&mut first).await;
    let _second = clients
        .setup
        .clone()
        .watch_setup(watch_request(&mine, &[], ""))
        .await
        .expect("second");
    let error = clients
        .setup
        .clone()
        .watch_setup(watch_request(&mine, &[], ""))
        .await
        .expect_err("third");
    assert_eq!(error.code(), Code::ResourceExhausted);
    assert_eq!(reason(&error), "WATCHERS_EXHAUSTED");
    // Ending a watch frees its place.
    drop(first);
    let setup = clients.setup.clone();
    let mine_for_retry = mine.clone();
    wait_until(|| {
        let mut setup = setup.clone();
        let request = watch_request(&mine_for_retry, &[], "");
        async move { setup.watch_setup(request).await.is_ok() }
    })
    .await;
    // Denials are audited.
    let audit = app.audit_records();
    assert!(
        audit.iter().any(|r| r["rpc"] == "WatchSetup"
            && r["caller"] == "token:onboarding"
            && r["outcome"] == "PERMISSION_DENIED"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn watches_end_with_unavailable_on_shutdown() {
    let mut app = spawn_app().await;
    let id = organization(&app, "stark", "stark.example").await;
    let mut stream = app
        .setup
        .clone()
        .watch_setup(watch_request(&id, &[], ""))
        .await
        .expect("watch")
        .into_inner();
    next(&mut stream).await;
    app.signal_shutdown();
    // Events from before the watch may still arrive; then the stream ends with a status.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Err(status) = stream.message().await {
                return status;
            }
        }
    })
    .await
    .expect("ends promptly");
    assert_eq!(ended.code(), Code::Unavailable);
    assert_eq!(reason(&ended), "SHUTTING_DOWN");
    let server = app.take_server();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .expect("join")
        .expect("clean stop");
}

#[tokio::test]
async fn the_cursor_survives_a_restart_in_the_state_file() {
    let workos = TestEmulator::start().await;
    let state_file = temp_path("setup-cursor");
    let config = crate::helpers::base_config(&workos.url).replace(
        "[setup]\n",
        &format!(
            "[setup]\nstate_file = {:?}\n",
            state_file.display().to_string()
        ),
    );
    let org = workos
        .create_organization(json!({"name": "Wayne", "external_id": "wayne"}))
        .await;
    let id = org["id"].as_str().expect("id").to_owned();

    // The first gateway: the watcher sees one event, and its cursor is saved.
    let mut first = spawn_app_with(
        TestEmulator::start().await,
        &config,
        crate::helpers::API_KEY,
    )
    .await;
    let mut stream = first
        .setup
        .clone()
        .watch_setup(watch_request(&id, &[Intent::Sso], ""))
        .await
        .expect("watch")
        .into_inner();
    next(&mut stream).await;
    workos
        .setup(&id, json!({"intent": "sso", "action": "activate"}))
        .await;
    let (_, _, cursor) = next_event(&mut stream).await;
    drop(stream);
    first.signal_shutdown();
    let _ = first.take_server().await;
    assert_eq!(
        std::fs::read_to_string(&state_file).expect("state file"),
        cursor,
        "the saved cursor is the last event read"
    );

    // While no gateway runs, the connection is deactivated.
    workos
        .setup(&id, json!({"intent": "sso", "action": "deactivate"}))
        .await;

    // The second gateway resumes from the file: the watcher gets exactly what it missed.
    let second = spawn_app_with(
        TestEmulator::start().await,
        &config,
        crate::helpers::API_KEY,
    )
    .await;
    let mut resumed = second
        .setup
        .clone()
        .watch_setup(watch_request(&id, &[Intent::Sso], &cursor))
        .await
        .expect("resume")
        .into_inner();
    let (name, state, _) = next_event(&mut resumed).await;
    assert_eq!(
        (name.as_str(), state),
        ("connection.deactivated", SetupState::NeedsAttention)
    );
    let _ = std::fs::remove_file(&state_file);
}

#[tokio::test]
async fn the_gateways_own_snapshot_cursor_resumes_without_a_resync() {
    let app = spawn_app().await;
    let id = organization(&app, "initial", "initial.example").await;
    let mut first = app
        .setup
        .clone()
        .watch_setup(watch_request(&id, &[Intent::Sso], ""))
        .await
        .expect("watch")
        .into_inner();
    let snapshot = next(&mut first).await;
    assert!(snapshot.cursor.starts_with("t1."), "{}", snapshot.cursor);
    drop(first);
    let mut resumed = app
        .setup
        .clone()
        .watch_setup(watch_request(&id, &[Intent::Sso], &snapshot.cursor))
        .await
        .expect("resume")
        .into_inner();
    app.emulator
        .setup(&id, json!({"intent": "sso", "action": "activate"}))
        .await;
    let message = next(&mut resumed).await;
    assert_eq!(
        message.snapshot_reason(),
        SnapshotReason::Unspecified,
        "resumed from its own cursor, not resynced"
    );
    assert_eq!(message.event.expect("event").name, "connection.activated");
}

#[tokio::test]
async fn an_events_api_outage_leaves_status_reads_alone() {
    let app = spawn_app().await;
    let id = organization(&app, "outage", "outage.example").await;
    app.emulator
        .fault(json!({"route": "GET /events", "status": 503}))
        .await;
    // The watch's poller fails on every page...
    let mut stream = app
        .setup
        .clone()
        .watch_setup(watch_request(&id, &[Intent::Sso], ""))
        .await
        .expect("watch")
        .into_inner();
    next(&mut stream).await;
    let polls = || app.emulator.count("GET /events");
    wait_until(|| async { polls().await >= 8 }).await;
    // ...and status reads that need no events go on, on their own breaker.
    for _ in 0..5 {
        let status = app
            .setup
            .clone()
            .get_setup_status(status_request(&id, &[Intent::Sso]))
            .await
            .expect("status while the Events API fails");
        assert_eq!(status.into_inner().status.expect("status").intents.len(), 1);
    }
}
