//! WatchSetup: one poller per gateway reads WorkOS's Events API with one cursor and fans the
//! setup events out to every watcher, so a thousand watchers cost the WorkOS calls of one.
//!
//! - The poller runs only while someone watches, draws on the quota as its own caller, and backs
//!   off while pages come back empty. Its cursor survives restarts in a state file when one is
//!   configured.
//! - The hub keeps the last `history` events, so a watcher resuming with a cursor gets what it
//!   missed; an older cursor gets a fresh snapshot flagged RESYNC instead.
//! - Fan-out is a bounded broadcast: a slow watcher never blocks the poller or another watcher.
//!   One that falls `buffer` events behind ends with WATCH_FELL_BEHIND and resumes.
//! - Snapshots for one organization and intent set are shared for a second, so a thousand
//!   watchers opening at once read WorkOS's state once.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

use tokio::sync::{broadcast, watch};

use crate::{
    auth::policy::{AccessRequest, Policy, Rpc},
    domain::{
        Intent, OrganizationId, OrganizationRef,
        setup::{IntentStatus, Position, SetupEvent, SetupStatus},
    },
    error::Error,
};

mod cluster;
mod open;
mod poller;
mod settings;

pub use cluster::EventBus;

pub use settings::{RawWatch, WatchSettings};

use super::Gateway;

/// The identity the poller's WorkOS calls count against in the quota.
pub const POLLER_CALLER: &str = "portal-gateway:setup-poller";

/// What the watch reports for metrics. Every method does nothing by default.
pub trait WatchObserve: Send + Sync + std::fmt::Debug {
    /// The number of open watches changed.
    fn watchers(&self, _open: usize) {}
    /// How far the poller is behind WorkOS: the age of the newest event it has read when the
    /// page held events, zero once a page comes back empty.
    fn poller_lag(&self, _lag: Duration) {}
    /// One poll ended (`ok`, `empty` or `error`).
    fn poll(&self, _outcome: &'static str) {}
    /// A watch ended with this ErrorInfo reason.
    fn ended(&self, _reason: &'static str) {}
    /// Whether this replica holds the cluster's setup poller lease.
    fn leading(&self, _leading: bool) {}
}

impl WatchObserve for () {}

/// One setup event as watchers receive it, with the state of its intent after it when the
/// poller computed that (it does for organizations someone watches).
#[derive(Debug)]
pub struct Update {
    /// The event.
    pub event: SetupEvent,
    /// Its intent's state after the event.
    pub status: Option<IntentStatus>,
    /// The position just after this event.
    pub position: Position,
}

/// Why a message is a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotReason {
    /// The first message of a stream opened without a cursor.
    Initial,
    /// The cursor was older than the events the gateway holds.
    Resync,
}

/// One message of a watch.
#[derive(Debug, Clone)]
pub enum WatchMessage {
    /// An event, with its intent's state after it.
    Event {
        /// The event.
        update: Arc<Update>,
        /// Its intent's state after it.
        status: IntentStatus,
    },
    /// The whole state now.
    Snapshot {
        /// The state.
        status: Arc<SetupStatus>,
        /// Why it was sent.
        reason: SnapshotReason,
        /// Where the stream continues from.
        position: Position,
    },
}

impl WatchMessage {
    /// The cursor to resume after this message.
    pub fn position(&self) -> &Position {
        match self {
            Self::Event { update, .. } => &update.position,
            Self::Snapshot { position, .. } => position,
        }
    }
}

/// A shared snapshot and the position it was read after.
type Snapshot = Arc<(Arc<SetupStatus>, Position)>;

/// The held updates after a position, and the live ones that follow.
type Opened = (Vec<Arc<Update>>, broadcast::Receiver<Arc<Update>>);

struct HubState {
    /// The position before the oldest event held.
    floor: Position,
    /// The position after the newest event read.
    position: Position,
    history: VecDeque<Arc<Update>>,
    per_caller: HashMap<String, u32>,
    per_organization: HashMap<String, u32>,
}

/// The watchers' side of the poller: history, fan-out and who is watching.
pub(super) struct Hub {
    settings: WatchSettings,
    state: Mutex<HubState>,
    updates: broadcast::Sender<Arc<Update>>,
    open: watch::Sender<usize>,
    closing: watch::Sender<bool>,
    snapshots: moka::future::Cache<(String, u8), Snapshot>,
    observe: Arc<dyn WatchObserve>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("settings", &self.settings)
            .field("open", &*self.open.borrow())
            .finish_non_exhaustive()
    }
}

impl Hub {
    pub(super) fn new(settings: WatchSettings, observe: Arc<dyn WatchObserve>) -> Self {
        let start = settings
            .state_file
            .as_deref()
            .and_then(read_state_file)
            .unwrap_or_else(Position::since_now);
        let (updates, _) = broadcast::channel(settings.buffer.max(1));
        Self {
            state: Mutex::new(HubState {
                floor: start.clone(),
                position: start,
                history: VecDeque::new(),
                per_caller: HashMap::new(),
                per_organization: HashMap::new(),
            }),
            updates,
            open: watch::channel(0).0,
            closing: watch::channel(false).0,
            snapshots: moka::future::Cache::builder()
                .time_to_live(Duration::from_secs(1))
                .max_capacity(10_000)
                .build(),
            settings,
            observe,
        }
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new watcher, refusing past the caller's limit.
    fn register(
        self: &Arc<Self>,
        caller: &str,
        organization_id: &str,
        limit: u32,
    ) -> Result<Registration, Error> {
        let mut state = self.state();
        let held = state.per_caller.entry(caller.to_owned()).or_default();
        if *held >= limit {
            return Err(Error::TooManyWatchers { limit });
        }
        *held += 1;
        *state
            .per_organization
            .entry(organization_id.to_owned())
            .or_default() += 1;
        drop(state);
        self.open.send_modify(|open| *open += 1);
        self.observe.watchers(*self.open.borrow());
        Ok(Registration {
            hub: self.clone(),
            caller: caller.to_owned(),
            organization_id: organization_id.to_owned(),
        })
    }

    /// Subscribes to updates after `from`, with the held updates after it. `None` when the
    /// gateway no longer holds that position (or never did).
    fn open(&self, from: &Position) -> Option<Opened> {
        let state = self.state();
        // Subscribing under the lock that publishing takes: nothing falls between the held
        // updates and the live ones, and nothing comes twice.
        let receiver = self.updates.subscribe();
        let replay = if *from == state.position {
            Vec::new()
        } else if *from == state.floor {
            state.history.iter().cloned().collect()
        } else {
            let at = state.history.iter().position(|u| u.position == *from)?;
            state.history.iter().skip(at + 1).cloned().collect()
        };
        Some((replay, receiver))
    }

    fn position(&self) -> Position {
        self.state().position.clone()
    }

    fn watched(&self, organization_id: &str) -> bool {
        self.state().per_organization.contains_key(organization_id)
    }

    /// Publishes a page's updates and moves the position past it.
    fn publish(&self, updates: Vec<Arc<Update>>, position: Position) {
        let mut state = self.state();
        for update in updates {
            state.history.push_back(update.clone());
            while state.history.len() > self.settings.history {
                if let Some(old) = state.history.pop_front() {
                    state.floor = old.position.clone();
                }
            }
            // No receivers is fine: nobody is watching right now.
            let _ = self.updates.send(update);
        }
        state.position = position;
    }

    /// Starts over from `position`, forgetting the held events (the old position is unusable).
    fn restart_from(&self, position: Position) {
        let mut state = self.state();
        state.history.clear();
        state.floor = position.clone();
        state.position = position;
    }

    /// Ends every watch (shutdown).
    pub(super) fn close(&self) {
        self.closing.send_replace(true);
    }
}

/// A watcher's place in the counts; dropping it (the stream ended) frees it.
#[derive(Debug)]
struct Registration {
    hub: Arc<Hub>,
    caller: String,
    organization_id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.hub.state();
        decrement(&mut state.per_caller, &self.caller);
        decrement(&mut state.per_organization, &self.organization_id);
        drop(state);
        self.hub
            .open
            .send_modify(|open| *open = open.saturating_sub(1));
        self.hub.observe.watchers(*self.hub.open.borrow());
    }
}

fn decrement(counts: &mut HashMap<String, u32>, key: &str) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

fn read_state_file(path: &std::path::Path) -> Option<Position> {
    let text = std::fs::read_to_string(path).ok()?;
    match Position::decode(text.trim()) {
        Ok(position) => Some(position),
        Err(_) => {
            tracing::warn!(path = %path.display(), "the setup watch state file holds no cursor; starting from now");
            None
        }
    }
}

/// Writes the cursor beside the file and renames it over, so a crash never leaves half a file.
async fn write_state_file(path: &std::path::Path, position: &Position) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    tokio::fs::write(&temporary, position.encode()).await?;
    tokio::fs::rename(&temporary, path).await
}

/// An open watch: the messages for one organization and intent set, in order.
#[derive(Debug)]
pub struct Watch {
    pending: VecDeque<WatchMessage>,
    receiver: broadcast::Receiver<Arc<Update>>,
    closing: watch::Receiver<bool>,
    organization_id: OrganizationId,
    intents: Vec<Intent>,
    gateway: Gateway,
    caller: Arc<str>,
    acting_user: Option<Arc<str>>,
    /// The policy the watch was last authorized under: a reload that changes it is checked
    /// again, and a caller whose rights were taken away loses the stream.
    policy: Arc<Policy>,
    /// States read on this watch's behalf, reused for a second (a replay of many events for one
    /// intent reads it once).
    statuses: HashMap<Intent, (IntentStatus, Instant)>,
    /// For a watch that began with a snapshot: events recorded this long before it are already
    /// in it, and are not sent.
    skip_before: Option<SystemTime>,
    /// When an idle watch next looks for a policy change.
    recheck: tokio::time::Interval,
    _registration: Registration,
}

/// How far before a snapshot's read events still reach a watch that began with it: WorkOS's
/// clock and this gateway's may differ a little.
const SNAPSHOT_OVERLAP: Duration = Duration::from_secs(5);

/// The deadline of a WorkOS call the watch makes on its own (a state read, a scope check).
pub(super) const OWN_CALL_WITHIN: Duration = Duration::from_secs(10);

/// How often an idle watch looks for a policy change.
const RECHECK_EVERY: Duration = Duration::from_secs(2);

impl Watch {
    /// The next message; an error ends the stream (the caller resumes from its last cursor).
    pub async fn next(&mut self) -> Result<WatchMessage, Error> {
        let result = self.next_inner().await;
        if let Err(error) = &result {
            self.gateway.hub.observe.ended(error.reason());
            if !matches!(error, Error::ShuttingDown) {
                tracing::info!(caller = %self.caller, reason = error.reason(), "a setup watch ended");
            }
        }
        result
    }

    async fn next_inner(&mut self) -> Result<WatchMessage, Error> {
        loop {
            self.still_allowed().await?;
            if let Some(message) = self.pending.pop_front() {
                return Ok(message);
            }
            let update = tokio::select! {
                biased;
                _ = self.closing.wait_for(|closing| *closing) => return Err(Error::ShuttingDown),
                received = self.receiver.recv() => match received {
                    Ok(update) => update,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        return Err(Error::WatchFellBehind);
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(Error::ShuttingDown),
                },
                _ = self.recheck.tick() => continue,
            };
            if let Some(message) = self.message_for(update).await {
                self.pending.push_back(message);
            }
        }
    }

    /// Authorizes the watch again when the policy changed since it last was.
    async fn still_allowed(&mut self) -> Result<(), Error> {
        let current = self.gateway.policy.current();
        if Arc::ptr_eq(&current, &self.policy) {
            return Ok(());
        }
        self.policy = current.clone();
        let request = |intent| AccessRequest {
            intent,
            acting_user: self.acting_user.as_deref(),
            ..AccessRequest::new(Rpc::WatchSetup)
        };
        for intent in &self.intents {
            current
                .authorize(&self.caller, &request(Some(*intent)))
                .into_result()?;
        }
        let mut upstream = self.gateway.own_call(&self.caller, OWN_CALL_WITHIN);
        let organization = OrganizationRef::Id(self.organization_id.clone());
        self.gateway
            .authorize_organization(
                &current,
                &mut upstream,
                &self.caller,
                request(None),
                &organization,
            )
            .await
            .map(drop)
    }

    /// The message an update makes for this watch, if it concerns it.
    async fn message_for(&mut self, update: Arc<Update>) -> Option<WatchMessage> {
        let event = &update.event;
        if event.organization_id.as_deref() != Some(self.organization_id.as_str())
            || !self.intents.contains(&event.intent)
            || self
                .skip_before
                .is_some_and(|before| event.created_at < before)
        {
            return None;
        }
        let status = match update.status {
            Some(status) => status,
            // Published before this organization had watchers: read its state now.
            None => self.status_of(event.intent).await,
        };
        Some(WatchMessage::Event { update, status })
    }

    /// An intent's state, read on this watch's behalf (reused for a second). A failed read is
    /// an unknown state, not the end of the stream.
    async fn status_of(&mut self, intent: Intent) -> IntentStatus {
        if let Some((status, at)) = self.statuses.get(&intent)
            && at.elapsed() < Duration::from_secs(1)
        {
            return *status;
        }
        let mut upstream = self.gateway.own_call(&self.caller, OWN_CALL_WITHIN);
        let status = match self
            .gateway
            .read_setup(&mut upstream, &self.organization_id, &[intent])
            .await
        {
            Ok(read) => read.intents[0],
            Err(_) => unreadable(intent),
        };
        self.statuses.insert(intent, (status, Instant::now()));
        status
    }
}

/// The idle recheck's timer: first tick one interval from now.
fn recheck_interval() -> tokio::time::Interval {
    let mut recheck = tokio::time::interval_at(Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    recheck
}

/// The state of an intent whose WorkOS read failed.
fn unreadable(intent: Intent) -> IntentStatus {
    IntentStatus {
        intent,
        state: crate::domain::setup::SetupState::Unknown,
        detail: "state_unavailable",
    }
}

#[cfg(test)]
mod tests;
