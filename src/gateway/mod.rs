//! The gateway's core: one operation per RPC, each taking a proven caller (inside a [`Call`])
//! and a parsed domain request, and returning the result while it fills in the call's audit
//! facts. Authorization, organization resolution, idempotency scoping and the acting user →
//! `external_user_id` rule all live here, testable without tonic.
//!
//! No proto or wire type appears here: the gRPC adapters (`crate::grpc`) convert on the way in
//! and out, and the WorkOS client (`crate::workos`) owns WorkOS's shapes.

mod access;
mod creates;
mod invitations;
mod organizations;
mod portal;
mod scope;
mod setup;
#[cfg(test)]
mod tests;
mod watch;

use std::{collections::BTreeMap, sync::Arc};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

pub use access::{AccessAnswer, AccessCheck};
pub use creates::{Claim, CreateLedger, Settled};
pub use invitations::Invited;
pub use watch::{
    EventBus, POLLER_CALLER, RawWatch, SnapshotReason, Update, Watch, WatchMessage, WatchObserve,
    WatchSettings,
};

use crate::{
    auth::{
        PolicyStore,
        audit::AuditEntry,
        identity::Caller,
        policy::{AccessRequest, Policy},
    },
    config::Problems,
    domain::{Intent, RedirectUrl},
    error::Error,
    workos,
};

/// Return and success URLs used when a request names none.
#[derive(Debug, Clone, Default)]
pub struct UrlDefaults {
    /// The portal's "back" link.
    pub return_url: Option<RedirectUrl>,
    /// Where the admin lands when done.
    pub success_url: Option<RedirectUrl>,
}

/// Portal settings from configuration.
#[derive(Debug, Clone, Default)]
pub struct PortalSettings {
    /// Whether `http://localhost` return and success URLs are accepted (development only).
    pub allow_http_loopback: bool,
    /// Defaults for every intent.
    pub defaults: UrlDefaults,
    /// Per-intent defaults, which win over `defaults`.
    pub intent_defaults: BTreeMap<Intent, UrlDefaults>,
}

impl PortalSettings {
    /// The default return URL for an intent.
    pub fn return_url(&self, intent: Intent) -> Option<&RedirectUrl> {
        self.intent_defaults
            .get(&intent)
            .and_then(|d| d.return_url.as_ref())
            .or(self.defaults.return_url.as_ref())
    }

    /// The default success URL for an intent.
    pub fn success_url(&self, intent: Intent) -> Option<&RedirectUrl> {
        self.intent_defaults
            .get(&intent)
            .and_then(|d| d.success_url.as_ref())
            .or(self.defaults.success_url.as_ref())
    }
}

/// The `[portal]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPortal {
    #[serde(default)]
    allow_http_loopback: bool,
    return_url: Option<String>,
    success_url: Option<String>,
    #[serde(default)]
    intents: BTreeMap<String, RawIntentDefaults>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntentDefaults {
    return_url: Option<String>,
    success_url: Option<String>,
}

impl RawPortal {
    /// Whether plain-http loopback URLs are allowed (the policy's origins need it too).
    pub fn allow_http_loopback(&self) -> bool {
        self.allow_http_loopback
    }

    /// Validates the table; every problem goes to `problems`.
    pub fn validate(self, problems: &mut Problems) -> PortalSettings {
        let loopback = self.allow_http_loopback;
        let mut url = |setting: &str, value: Option<&str>| {
            value.and_then(|v| problems.check(setting, RedirectUrl::parse(v, loopback)))
        };
        let defaults = UrlDefaults {
            return_url: url("portal.return_url", self.return_url.as_deref()),
            success_url: url("portal.success_url", self.success_url.as_deref()),
        };
        let mut intent_defaults = BTreeMap::new();
        for (name, urls) in &self.intents {
            let Some(intent) = Intent::from_workos_name(name) else {
                let known: Vec<&str> = Intent::ALL.iter().map(|i| i.workos_name()).collect();
                problems.push(format!(
                    "portal.intents.{name}: unknown intent; use one of {}",
                    known.join(", ")
                ));
                continue;
            };
            let mut url = |field: &str, value: Option<&str>| {
                let setting = format!("portal.intents.{name}.{field}");
                value.and_then(|v| problems.check(&setting, RedirectUrl::parse(v, loopback)))
            };
            let urls = UrlDefaults {
                return_url: url("return_url", urls.return_url.as_deref()),
                success_url: url("success_url", urls.success_url.as_deref()),
            };
            intent_defaults.insert(intent, urls);
        }
        PortalSettings {
            allow_http_loopback: loopback,
            defaults,
            intent_defaults,
        }
    }
}

/// The identity the gateway's own WorkOS calls (the key probe) count against in the quota.
pub const PROBE_CALLER: &str = "portal-gateway:health-probe";

/// What the adapter knows of a call before the core takes it.
#[derive(Debug)]
pub struct CallSetup {
    /// When the caller stops waiting.
    pub deadline: Instant,
    /// `x-request-id`: the caller's, or generated.
    pub request_id: String,
    /// The trace context to send upstream.
    pub traceparent: Option<String>,
    /// The end user the caller acts for (`x-acting-user`), already validated.
    pub acting_user: Option<String>,
}

/// One RPC in the core: who asks, for whom, under which deadline, and the facts the audit
/// record will hold. The typed per-call context; nothing in it is shared with other calls.
#[derive(Debug)]
pub struct Call {
    caller: Caller,
    /// The policy in force when the call began: every decision of the call is made on it, even
    /// if a reload lands meanwhile.
    policy: Arc<Policy>,
    acting_user: Option<Arc<str>>,
    upstream: workos::Call,
    facts: AuditEntry,
}

impl Call {
    /// The proven caller.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The audit facts so far.
    pub fn facts(&self) -> &AuditEntry {
        &self.facts
    }

    /// Ends the call: its audit facts, and WorkOS's request id of its last upstream answer.
    pub fn finish(self) -> (AuditEntry, Option<String>) {
        let workos_request_id = self.upstream.workos_request_id().map(str::to_owned);
        (self.facts, workos_request_id)
    }
}

/// One row of `ListIntents`.
#[derive(Debug, Clone)]
pub struct IntentInfo {
    /// The intent.
    pub intent: Intent,
    /// Default return URL, if configured.
    pub return_url: Option<String>,
    /// Default success URL, if configured.
    pub success_url: Option<String>,
}

/// The gateway. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct Gateway {
    workos: workos::Client,
    portal: Arc<PortalSettings>,
    policy: PolicyStore,
    hub: Arc<watch::Hub>,
    /// The setup events bus shared with other replicas, when there are any.
    bus: Option<Arc<dyn EventBus>>,
    /// Invitations in progress, one organization at a time.
    invite_locks: Arc<std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// The answers given to creates, for retries with the same `request_id`.
    creates: creates::CreateRecords,
    /// The same, shared with other replicas, when there are any.
    ledger: Option<Arc<dyn CreateLedger>>,
}

impl Gateway {
    /// Wires the core to a WorkOS client and the policy in force.
    pub fn new(workos: workos::Client, portal: PortalSettings, policy: PolicyStore) -> Self {
        Self {
            workos,
            portal: Arc::new(portal),
            policy,
            hub: Arc::new(watch::Hub::new(WatchSettings::default(), Arc::new(()))),
            bus: None,
            invite_locks: Arc::default(),
            creates: creates::CreateRecords::default(),
            ledger: None,
        }
    }

    /// Shares the answers given to creates with other replicas through `ledger`, so a retry
    /// with the same `request_id` gets the first answer whichever replica it reaches.
    pub fn with_create_ledger(mut self, ledger: Arc<dyn CreateLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Shares the setup events poller with other replicas through `bus`: one of them polls, all
    /// of them fan out.
    pub fn with_event_bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Runs setup watches with `settings`, reporting to `observe`.
    pub fn with_watch(mut self, settings: WatchSettings, observe: Arc<dyn WatchObserve>) -> Self {
        self.hub = Arc::new(watch::Hub::new(settings, observe));
        self
    }

    /// Builds the WorkOS client from its settings and wires the core to it.
    pub fn connect(
        settings: &workos::Settings,
        observe: Arc<dyn workos::Observe>,
        portal: PortalSettings,
        policy: PolicyStore,
    ) -> Result<Self, workos::Error> {
        Self::connect_clustered(settings, observe, portal, policy, None)
    }

    /// Like [`Gateway::connect`], as one of several replicas sharing `cluster`.
    pub fn connect_clustered(
        settings: &workos::Settings,
        observe: Arc<dyn workos::Observe>,
        portal: PortalSettings,
        policy: PolicyStore,
        cluster: Option<workos::ClusterHooks>,
    ) -> Result<Self, workos::Error> {
        let client = workos::Client::clustered(settings, observe, cluster)?;
        Ok(Self::new(client, portal, policy))
    }

    /// Drops an organization another replica changed from this replica's cache.
    pub async fn forget_changed_elsewhere(&self, organization_id: &str) {
        self.workos.forget_changed_elsewhere(organization_id).await;
    }

    /// Watches whether WorkOS rejects the gateway's key, for health reporting.
    pub fn workos_key_rejected(&self) -> tokio::sync::watch::Receiver<bool> {
        self.workos.key_rejected()
    }

    /// Asks WorkOS for one organization, as the gateway itself, to learn whether it accepts the
    /// key again (the answer also clears the rejection health reports). Counted against the
    /// quota like any call. Returns whether WorkOS answered successfully.
    pub async fn probe_workos(&self) -> bool {
        let mut upstream = self.own_call(PROBE_CALLER, std::time::Duration::from_secs(5));
        let query = crate::domain::ListQuery {
            limit: 1,
            cursor: None,
            domains: Vec::new(),
            order: crate::domain::ListOrder::Descending,
        };
        self.workos
            .list_organizations(&mut upstream, &query)
            .await
            .is_ok()
    }

    /// A WorkOS call the gateway makes itself (the key probe, the setup poller, a watch's reads),
    /// counted against the quota as `caller`, with a deadline `within` from now.
    fn own_call(&self, caller: &str, within: std::time::Duration) -> workos::Call {
        workos::Call::new(workos::CallContext {
            deadline: Instant::now() + within,
            caller: Arc::from(caller),
            caller_per_minute: None,
            request_id: crate::domain::random_uuid(),
            traceparent: None,
        })
    }

    /// Portal settings, for request validation at the edge.
    pub fn portal_settings(&self) -> &PortalSettings {
        &self.portal
    }

    /// Whether a policy rule names `identity` (so it may appear as a metrics label).
    pub fn knows(&self, identity: &str) -> bool {
        self.policy.current().rule_for(identity).is_some()
    }

    /// Starts a call for a proven caller; `facts` is its audit entry so far.
    pub fn begin(&self, caller: Caller, setup: CallSetup, mut facts: AuditEntry) -> Call {
        facts.caller(&caller);
        facts.acting_user(setup.acting_user.as_deref());
        let policy = self.policy.current();
        let caller_per_minute = policy
            .rule_for(&caller.identity)
            .and_then(|rule| rule.requests_per_minute);
        let upstream = workos::Call::new(workos::CallContext {
            deadline: setup.deadline,
            caller: Arc::from(caller.identity.as_str()),
            caller_per_minute,
            request_id: setup.request_id,
            traceparent: setup.traceparent,
        });
        Call {
            caller,
            policy,
            acting_user: setup.acting_user.map(Arc::from),
            upstream,
            facts,
        }
    }

    /// The policy's verdict on a would-be call of this caller's.
    fn authorize(&self, call: &Call, request: &AccessRequest<'_>) -> Result<(), Error> {
        call.policy
            .authorize(&call.caller.identity, request)
            .into_result()
    }
}

/// Scopes a caller's idempotency key to the caller, so two callers that happen to choose the same
/// `request_id` can never receive each other's organization. The same inputs give the same key,
/// so retries still deduplicate.
fn scoped_idempotency_key(identity: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("{identity}\n{key}").as_bytes());
    format!("pg-{}", crate::domain::hex(&digest))
}
