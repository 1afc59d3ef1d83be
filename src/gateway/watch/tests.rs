//! The hub without WorkOS: fan-out, falling behind, resuming from held events, shutdown and the
//! per-caller limit, on synthetic updates.

use std::{collections::VecDeque, sync::Arc, time::SystemTime};

use super::{Gateway, Hub, Position, Update, Watch, WatchSettings};
use crate::{
    auth::PolicyStore,
    domain::{
        Intent, OrganizationId,
        setup::{IntentStatus, SetupEvent, SetupState},
    },
    error::Error,
    gateway::PortalSettings,
    workos,
};

const ORG: &str = "org_01JAAAAAAAAAAAAAAAAAAAAAAA";

fn gateway(history: usize, buffer: usize) -> Gateway {
    let settings = workos::Settings::new(
        url::Url::parse("http://127.0.0.1:9").expect("url"),
        secrecy::SecretString::from("sk_test_unused"),
    );
    let client = workos::Client::new(&settings, Arc::new(())).expect("client");
    Gateway::new(client, PortalSettings::default(), PolicyStore::default()).with_watch(
        WatchSettings {
            history,
            buffer,
            ..WatchSettings::default()
        },
        Arc::new(()),
    )
}

fn hub(gateway: &Gateway) -> &Arc<Hub> {
    &gateway.hub
}

/// A watch on `ORG`'s SSO from `from`, as `caller`, bypassing authorization and the snapshot.
fn watch(gateway: &Gateway, caller: &str, from: &Position) -> Result<Watch, Error> {
    let registration = hub(gateway).register(caller, ORG, 2)?;
    let (replay, receiver) = hub(gateway).open(from).expect("held");
    Ok(Watch {
        pending: VecDeque::new(),
        receiver,
        closing: hub(gateway).closing.subscribe(),
        organization_id: OrganizationId::parse(ORG).expect("id"),
        intents: vec![Intent::Sso],
        gateway: gateway.clone(),
        caller: Arc::from(caller),
        acting_user: None,
        policy: gateway.policy.current(),
        statuses: std::collections::HashMap::new(),
        skip_before: None,
        recheck: super::recheck_interval(),
        _registration: registration,
    })
    .map(|mut watch| {
        for update in replay {
            let status = update.status.expect("status");
            watch
                .pending
                .push_back(super::WatchMessage::Event { update, status });
        }
        watch
    })
}

fn update(n: usize) -> Arc<Update> {
    let id = format!("event_{n:026}");
    Arc::new(Update {
        event: SetupEvent {
            id: id.clone(),
            name: "connection.activated".into(),
            intent: Intent::Sso,
            organization_id: Some(ORG.into()),
            object_id: "conn_1".into(),
            verified: None,
            created_at: SystemTime::now(),
        },
        status: Some(IntentStatus {
            intent: Intent::Sso,
            state: SetupState::Complete,
            detail: "connection_active",
        }),
        position: Position::After(id),
    })
}

fn publish(gateway: &Gateway, range: std::ops::Range<usize>) {
    for n in range {
        let update = update(n);
        let position = update.position.clone();
        hub(gateway).publish(vec![update], position);
    }
}

async fn event_id(watch: &mut Watch) -> String {
    match watch.next().await.expect("a message") {
        super::WatchMessage::Event { update, .. } => update.event.id.clone(),
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_cut_off_and_the_others_get_everything() {
    let gateway = gateway(100, 4);
    let start = hub(&gateway).position();
    let mut reader = watch(&gateway, "reader", &start).expect("reader");
    let mut sleeper = watch(&gateway, "sleeper", &start).expect("sleeper");
    for n in 0..10 {
        // Publishing never waits for anyone.
        publish(&gateway, n..n + 1);
        assert_eq!(event_id(&mut reader).await, format!("event_{n:026}"));
    }
    assert!(matches!(sleeper.next().await, Err(Error::WatchFellBehind)));
}

#[tokio::test]
async fn a_cursor_among_the_held_events_resumes_exactly_and_an_older_one_does_not() {
    let gateway = gateway(5, 100);
    let floor = hub(&gateway).position();
    publish(&gateway, 0..3);
    // The floor is still held: everything after it.
    let mut from_floor = watch(&gateway, "a", &floor).expect("from the floor");
    assert_eq!(event_id(&mut from_floor).await, format!("event_{:026}", 0));
    publish(&gateway, 3..8);
    // Only the last five are held now: event 1 is gone, event 4 is not.
    assert!(hub(&gateway).open(&update(1).position).is_none());
    let mut resumed = watch(&gateway, "b", &update(4).position).expect("held");
    for n in 5..8 {
        assert_eq!(event_id(&mut resumed).await, format!("event_{n:026}"));
    }
    let (replay, _) = hub(&gateway).open(&hub(&gateway).position()).expect("now");
    assert!(replay.is_empty());
}

#[tokio::test]
async fn watches_end_on_shutdown_and_the_per_caller_limit_frees_on_drop() {
    let gateway = gateway(100, 100);
    let now = hub(&gateway).position();
    let first = watch(&gateway, "limited", &now).expect("first");
    let mut second = watch(&gateway, "limited", &now).expect("second");
    assert!(matches!(
        watch(&gateway, "limited", &now),
        Err(Error::TooManyWatchers { limit: 2 })
    ));
    drop(first);
    let _third = watch(&gateway, "limited", &now).expect("a place was freed");
    assert!(hub(&gateway).watched(ORG));
    gateway.close_watches();
    assert!(matches!(second.next().await, Err(Error::ShuttingDown)));
}
