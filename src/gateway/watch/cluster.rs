//! The setup watch across replicas: one replica at a time (the lease holder) polls WorkOS and
//! appends each page to a shared stream with the cursor, and every replica follows the stream and
//! fans the events out to its own watchers. The bus itself (Redis) is `crate::cluster`'s.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use super::{POLLER_CALLER, Position};
use crate::{
    domain::setup::{EventQuery, SETUP_EVENTS, SetupEvent},
    gateway::Gateway,
};

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where one poller publishes setup events for every replica.
pub trait EventBus: Send + Sync + std::fmt::Debug {
    /// Takes or renews the poller's lease; whether this replica holds it now.
    fn lead(&self) -> Boxed<'_, bool>;
    /// How long the lease lasts unless renewed.
    fn lease_ttl(&self) -> Duration;
    /// The shared cursor (`Position::encode`), if any was stored.
    fn cursor(&self) -> Boxed<'_, Result<Option<String>, ()>>;
    /// Appends events (each `SetupEvent::to_json`) and stores `cursor`, only while this replica
    /// holds the lease: `Ok(false)` when it does not. Keeps about `keep` events.
    fn append(
        &self,
        events: Vec<String>,
        cursor: String,
        keep: usize,
    ) -> Boxed<'_, Result<bool, ()>>;
    /// Entries `(stream id, event)` after the stream id `after`, waiting up to `wait` for some;
    /// with no `after`, the newest `backlog` entries, oldest first.
    fn read(
        &self,
        after: Option<String>,
        backlog: usize,
        wait: Duration,
    ) -> Boxed<'_, Result<Vec<(String, String)>, ()>>;
}

/// Polls WorkOS while this replica holds the lease, appending each page with its cursor.
pub(super) async fn lead(gateway: &Gateway, bus: Arc<dyn EventBus>) {
    let hub = gateway.hub.clone();
    let settings = hub.settings.clone();
    let names: Vec<&'static str> = SETUP_EVENTS.iter().map(|(name, _)| *name).collect();
    let mut closing = hub.closing.subscribe();
    let renew = bus.lease_ttl() / 3;
    let mut wait = settings.poll_interval;
    let mut leading = false;
    loop {
        let pause = if !bus.lead().await {
            if leading {
                tracing::warn!("this replica lost the setup poller's lease");
                hub.observe.leading(false);
            }
            leading = false;
            renew
        } else {
            if !leading {
                tracing::info!("this replica now polls WorkOS's setup events for the cluster");
                hub.observe.leading(true);
                leading = true;
            }
            // The lease is renewed while the poll runs, however slow WorkOS is.
            let renewing = async {
                loop {
                    tokio::time::sleep(renew).await;
                    bus.lead().await;
                }
            };
            let polled = tokio::select! {
                polled = poll_once(gateway, bus.as_ref(), &names, settings.history) => polled,
                () = renewing => Err(()),
            };
            match polled {
                Ok(true) => {
                    wait = settings.poll_interval;
                    Duration::ZERO
                }
                Ok(false) => {
                    let pause = wait;
                    wait = (wait + settings.poll_interval).min(settings.poll_max_interval);
                    pause
                }
                Err(()) => {
                    wait = (wait * 2).min(settings.poll_max_interval);
                    wait
                }
            }
        };
        // Never sleep past a renewal.
        tokio::select! {
            _ = closing.wait_for(|closing| *closing) => return,
            () = tokio::time::sleep(pause.min(renew)) => {}
        }
    }
}

/// One page from WorkOS onto the bus: `Ok(true)` when it held events (read on at once).
async fn poll_once(
    gateway: &Gateway,
    bus: &dyn EventBus,
    names: &[&'static str],
    keep: usize,
) -> Result<bool, ()> {
    let from = match bus.cursor().await? {
        Some(cursor) => Position::decode(&cursor).unwrap_or_else(|_| Position::since_now()),
        None => {
            // The first leader ever, or Redis lost its data: go on from where this replica's
            // watchers are (WorkOS still holds what came since), and store it for successors.
            let start = gateway.hub.position();
            bus.append(Vec::new(), start.encode(), keep).await?;
            start
        }
    };
    let query = EventQuery {
        names: names.to_vec(),
        organization_id: None,
        from,
        limit: 100,
    };
    let mut upstream = gateway.own_call(POLLER_CALLER, super::OWN_CALL_WITHIN);
    let page = match gateway.workos.poll_events(&mut upstream, &query).await {
        Ok(page) => page,
        Err(error) => {
            gateway.hub.observe.poll("error");
            if matches!(
                &error,
                crate::workos::Error::Api {
                    status: 400 | 404 | 422,
                    ..
                }
            ) && matches!(query.from, Position::After(_))
            {
                // WorkOS refuses the stored cursor itself: go on from now.
                tracing::warn!(error = %error, "WorkOS refused the cluster's setup poller cursor; reading events from now on");
                bus.append(Vec::new(), Position::since_now().encode(), keep)
                    .await?;
                return Err(());
            }
            tracing::warn!(error = %error, "the setup events poller could not read WorkOS's events");
            return Err(());
        }
    };
    let Some(last_id) = page.last_id else {
        gateway.hub.observe.poll("empty");
        return Ok(false);
    };
    gateway.hub.observe.poll("ok");
    let events = page.events.iter().map(SetupEvent::to_json).collect();
    bus.append(events, Position::After(last_id).encode(), keep)
        .await?;
    Ok(true)
}

/// Follows the bus, publishing its events to this replica's watchers.
pub(super) async fn follow(gateway: &Gateway, bus: Arc<dyn EventBus>) {
    let hub = gateway.hub.clone();
    let mut closing = hub.closing.subscribe();
    let history = hub.settings.history;
    // Start from the newest events, so watchers resuming here find what they saw elsewhere.
    let mut last = loop {
        match bus.read(None, history, Duration::ZERO).await {
            Ok(entries) => {
                let events: Vec<SetupEvent> = entries
                    .iter()
                    .filter_map(|(_, event)| SetupEvent::from_json(event))
                    .collect();
                if let Some(first) = events.first() {
                    hub.restart_from(Position::After(first.id.clone()));
                    let rest = events.into_iter().skip(1).collect::<Vec<_>>();
                    publish(gateway, rest).await;
                }
                break entries
                    .last()
                    .map_or_else(|| "0-0".to_owned(), |(id, _)| id.clone());
            }
            Err(()) => {
                tokio::select! {
                    _ = closing.wait_for(|closing| *closing) => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    loop {
        let read = tokio::select! {
            _ = closing.wait_for(|closing| *closing) => return,
            read = bus.read(Some(last.clone()), history, Duration::from_secs(1)) => read,
        };
        match read {
            Ok(entries) => {
                if let Some((id, _)) = entries.last() {
                    last = id.clone();
                }
                let events = entries
                    .iter()
                    .filter_map(|(_, event)| SetupEvent::from_json(event))
                    .collect();
                publish(gateway, events).await;
            }
            Err(()) => {
                tokio::select! {
                    _ = closing.wait_for(|closing| *closing) => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

async fn publish(gateway: &Gateway, events: Vec<SetupEvent>) {
    let Some(last) = events.last().map(|e| e.id.clone()) else {
        return;
    };
    let newest = events.last().map(|e| e.created_at);
    let updates = gateway.updates_for(events).await;
    gateway.hub.publish(updates, Position::After(last));
    if let Some(newest) = newest {
        gateway.hub.observe.poller_lag(
            std::time::SystemTime::now()
                .duration_since(newest)
                .unwrap_or_default(),
        );
    }
}
