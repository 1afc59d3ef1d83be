//! The one events poller: reads WorkOS's Events API from the hub's position while anyone
//! watches, computes each watched intent's new state once per page, and publishes.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::{POLLER_CALLER, Update, WatchSettings, write_state_file};
use crate::{
    domain::{
        Intent, OrganizationId,
        setup::{self, EventQuery, IntentStatus, Position, SETUP_EVENTS},
    },
    gateway::Gateway,
};

impl Gateway {
    /// Runs the events poller until the gateway closes the watches. It polls only while
    /// someone watches.
    pub async fn run_setup_poller(&self) {
        if let Some(bus) = self.bus.clone() {
            tokio::join!(
                super::cluster::lead(self, bus.clone()),
                super::cluster::follow(self, bus)
            );
            return;
        }
        let hub = self.hub.clone();
        let settings = hub.settings.clone();
        let names: Vec<&'static str> = SETUP_EVENTS.iter().map(|(name, _)| *name).collect();
        let mut open = hub.open.subscribe();
        let mut closing = hub.closing.subscribe();
        let mut wait = settings.poll_interval;
        let mut failing = false;
        // When a poll last succeeded, and when the failure was last logged.
        let mut last_success = std::time::Instant::now();
        let mut last_warning = std::time::Instant::now();
        loop {
            if *open.borrow() == 0 {
                // Nobody watches: read nothing until someone does, then start quick.
                tokio::select! {
                    _ = closing.wait_for(|closing| *closing) => return,
                    _ = open.wait_for(|open| *open > 0) => {}
                }
                wait = settings.poll_interval;
                last_success = std::time::Instant::now();
            }
            let query = EventQuery {
                names: names.clone(),
                organization_id: None,
                from: hub.position(),
                limit: 100,
            };
            let mut upstream = self.own_call(POLLER_CALLER, super::OWN_CALL_WITHIN);
            let page = self.workos.poll_events(&mut upstream, &query).await;
            let (had_events, full) = match page {
                Ok(page) if page.len == 0 => {
                    hub.observe.poll("empty");
                    hub.observe.poller_lag(Duration::ZERO);
                    (false, false)
                }
                Ok(page) => {
                    hub.observe.poll("ok");
                    let full = page.len == usize::from(query.limit);
                    self.absorb(page, &settings).await;
                    (true, full)
                }
                Err(error) => {
                    hub.observe.poll("error");
                    // Behind by as long as it has not read: the gauge must not say "caught up".
                    hub.observe.poller_lag(last_success.elapsed());
                    if matches!(
                        &error,
                        crate::workos::Error::Api {
                            status: 400 | 404 | 422,
                            ..
                        }
                    ) && matches!(query.from, Position::After(_))
                    {
                        // WorkOS refuses the cursor itself (a state file from another
                        // environment, or an event past retention): start from now. Held events
                        // are dropped, so watchers resuming get a RESYNC snapshot.
                        tracing::warn!(error = %error, "WorkOS refused the setup poller's cursor; reading events from now on");
                        hub.restart_from(Position::since_now());
                        continue;
                    }
                    if !failing || last_warning.elapsed() > Duration::from_secs(60) {
                        tracing::warn!(error = %error, behind = ?last_success.elapsed(), "the setup events poller could not read WorkOS's events; retrying with backoff");
                        last_warning = std::time::Instant::now();
                    }
                    failing = true;
                    wait = (wait * 2).min(settings.poll_max_interval);
                    tokio::select! {
                        _ = closing.wait_for(|closing| *closing) => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            };
            last_success = std::time::Instant::now();
            if failing {
                tracing::info!("the setup events poller reads WorkOS's events again");
                failing = false;
            }
            if had_events {
                wait = settings.poll_interval;
            }
            if full {
                // More are waiting: read on at once.
                continue;
            }
            tokio::select! {
                _ = closing.wait_for(|closing| *closing) => return,
                () = tokio::time::sleep(wait) => {}
            }
            if !had_events {
                // Quiet: back off by one interval per empty page, up to the longest wait. Adding
                // rather than doubling keeps events that come every second or so from waiting
                // behind a long backoff, while a quiet minute still costs few calls.
                wait = (wait + settings.poll_interval).min(settings.poll_max_interval);
            }
        }
    }

    /// Turns a page of events into updates, computing each watched intent's new state once per
    /// page, and publishes them.
    async fn absorb(&self, page: setup::EventPage, settings: &WatchSettings) {
        let hub = &self.hub;
        let Some(last_id) = page.last_id else { return };
        let newest = page.events.last().map(|e| e.created_at);
        let updates = self.updates_for(page.events).await;
        let position = Position::After(last_id);
        // Saved before the events go out: a watcher that saw an event can resume after it even
        // if the gateway stops a moment later.
        if let Some(path) = &settings.state_file
            && let Err(error) = write_state_file(path, &position).await
        {
            tracing::warn!(path = %path.display(), error = %error, "could not save the setup watch cursor");
        }
        hub.publish(updates, position);
        if let Some(newest) = newest {
            hub.observe
                .poller_lag(SystemTime::now().duration_since(newest).unwrap_or_default());
        }
    }

    /// The events as updates, with the new state of each intent someone here watches, read
    /// once per organization and intent.
    pub(super) async fn updates_for(&self, events: Vec<setup::SetupEvent>) -> Vec<Arc<Update>> {
        let hub = &self.hub;
        let mut states: HashMap<(String, Intent), Option<IntentStatus>> = HashMap::new();
        for event in &events {
            let Some(organization_id) = &event.organization_id else {
                continue;
            };
            if event.intent == Intent::DomainVerification {
                // Every reader of this organization should see the domain's new state.
                self.workos.forget_organization(organization_id).await;
            }
            if hub.watched(organization_id) {
                states.insert((organization_id.clone(), event.intent), None);
            }
        }
        let reads = states.keys().cloned().collect::<Vec<_>>();
        let results = futures_util::future::join_all(reads.iter().map(|(org, intent)| async {
            let Ok(id) = OrganizationId::parse(org) else {
                return None;
            };
            let mut upstream = self.own_call(POLLER_CALLER, super::OWN_CALL_WITHIN);
            match intent {
                // No REST state: the event itself is the signal, applied per event below.
                Intent::CertificateRenewal | Intent::BringYourOwnKey => None,
                // A failed read is an unknown state for everyone, not a read by every watcher.
                _ => Some(
                    self.read_setup(&mut upstream, &id, &[*intent])
                        .await
                        .map_or_else(|_| super::unreadable(*intent), |status| status.intents[0]),
                ),
            }
        }))
        .await;
        for (key, status) in reads.into_iter().zip(results) {
            states.insert(key, status);
        }
        events
            .into_iter()
            .map(|event| {
                let status = match event.intent {
                    Intent::CertificateRenewal => {
                        Some(setup::certificate_status(Some(&event.signal())))
                    }
                    Intent::BringYourOwnKey => Some(setup::key_status(Some(&event.signal()))),
                    intent => event
                        .organization_id
                        .clone()
                        .and_then(|org| states.get(&(org, intent)).copied().flatten()),
                };
                Arc::new(Update {
                    position: Position::After(event.id.clone()),
                    event,
                    status,
                })
            })
            .collect()
    }
}
