//! The emulator's in-memory WorkOS: organizations, their domains, portal links, IT contacts and
//! their invitations, idempotency records, injected faults and request counts.
//!
//! One `std::sync::Mutex` guards it: no critical section awaits, so a blocking mutex is both
//! correct and faster than an async one. Every mutation validates first and applies after, so a
//! rejected request never leaves a half-made change behind.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::{Duration, SystemTime},
};

use rand::{Rng, SeedableRng, distr::Alphanumeric, rngs::StdRng};
use serde_json::{Map, Value, json};
use ulid::Ulid;

use super::{
    events::EventLog,
    invites::Invites,
    setup::{AuditConfig, Connection, Directory},
};

/// How long a portal link works after it is minted (WorkOS: five minutes).
pub(crate) const LINK_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// How long an idempotency key is remembered (WorkOS documents 24 hours).
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The most links remembered at once; past it the oldest are forgotten (they read as unknown),
/// so a long benchmark cannot grow memory without bound.
const MAX_LINKS: usize = 500_000;

/// How many recent requests the control API can show.
const REQUEST_LOG_CAPACITY: usize = 1000;

/// A domain's verification state, as WorkOS names it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DomainState {
    Pending,
    Verified,
    /// Not verified within WorkOS's 30-day window; verification can be restarted.
    Failed,
    LegacyVerified,
}

impl DomainState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Verified => "verified",
            Self::Failed => "failed",
            Self::LegacyVerified => "legacy_verified",
        }
    }
}

/// An organization domain.
#[derive(Debug, Clone)]
pub(crate) struct Domain {
    pub(crate) id: String,
    pub(crate) organization_id: String,
    pub(crate) domain: String,
    pub(crate) state: DomainState,
    pub(crate) manual: bool,
    pub(crate) verification_prefix: String,
    pub(crate) verification_token: String,
    pub(crate) created_at: SystemTime,
    pub(crate) updated_at: SystemTime,
}

impl Domain {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "object": "organization_domain",
            "id": self.id,
            "organization_id": self.organization_id,
            "domain": self.domain,
            "state": self.state.as_str(),
            "verification_strategy": if self.manual { "manual" } else { "dns" },
            "verification_prefix": self.verification_prefix,
            "verification_token": self.verification_token,
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
        })
    }
}

/// An organization.
#[derive(Debug, Clone)]
pub(crate) struct Organization {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) domains: Vec<Domain>,
    pub(crate) metadata: Map<String, Value>,
    pub(crate) external_id: Option<String>,
    pub(crate) stripe_customer_id: Option<String>,
    pub(crate) allow_profiles_outside_organization: bool,
    pub(crate) created_at: SystemTime,
    pub(crate) updated_at: SystemTime,
}

impl Organization {
    /// The organization as WorkOS sends it: every key the official SDKs require, `metadata` an
    /// object and never null, `external_id` present even when null, and `stripe_customer_id`
    /// omitted when unset (as production does).
    pub(crate) fn to_json(&self) -> Value {
        let mut value = json!({
            "object": "organization",
            "id": self.id,
            "name": self.name,
            "domains": self.domains.iter().map(Domain::to_json).collect::<Vec<_>>(),
            "metadata": self.metadata,
            "external_id": self.external_id,
            "allow_profiles_outside_organization": self.allow_profiles_outside_organization,
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
        });
        if let (Some(stripe), Value::Object(map)) = (&self.stripe_customer_id, &mut value) {
            map.insert("stripe_customer_id".into(), Value::String(stripe.clone()));
        }
        value
    }
}

/// A minted portal link, kept so the portal page can be served and revoked.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) organization_id: String,
    /// `None` for a link minted without an intent: its page offers a menu of intents.
    pub(crate) intent: Option<String>,
    /// For a link without an intent, the intents its menu offers; `None` offers every intent.
    pub(crate) menu: Option<Vec<&'static str>>,
    pub(crate) return_url: Option<String>,
    pub(crate) success_url: Option<String>,
    pub(crate) external_user_id: Option<String>,
    pub(crate) issued_at: SystemTime,
    /// How long it works: [`LINK_LIFETIME`] for links minted through the API, longer for the
    /// links invitations e-mail.
    pub(crate) lifetime: Duration,
    pub(crate) revoked: bool,
}

/// A remembered answer to a POST that carried an `Idempotency-Key`.
#[derive(Debug, Clone)]
pub(crate) struct IdempotentAnswer {
    pub(crate) route: String,
    pub(crate) request: Value,
    pub(crate) status: u16,
    pub(crate) response: Value,
    pub(crate) stored_at: SystemTime,
}

/// A fault injected through the control API.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub(crate) id: u64,
    /// `"METHOD /route/{template}"`, or `"*"` for every WorkOS route.
    pub(crate) route: String,
    /// Status to answer with; `None` for a delay-only fault.
    pub(crate) status: Option<u16>,
    pub(crate) retry_after: Option<u64>,
    pub(crate) delay: Duration,
    pub(crate) probability: f64,
    /// How many more requests it applies to; `None` for unlimited.
    pub(crate) remaining: Option<u64>,
    /// Run the real handler first, so the change commits, then answer with the fault.
    pub(crate) after_commit: bool,
    /// Answer with a body that is not JSON.
    pub(crate) malformed: bool,
}

impl Fault {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "route": self.route,
            "status": self.status,
            "retry_after": self.retry_after,
            "delay_ms": self.delay.as_millis() as u64,
            "probability": self.probability,
            "remaining": self.remaining,
            "after_commit": self.after_commit,
            "malformed": self.malformed,
        })
    }
}

/// One request as the control API reports it.
#[derive(Debug, Clone)]
pub(crate) struct RequestRecord {
    pub(crate) route: String,
    pub(crate) status: u16,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) traceparent: Option<String>,
    pub(crate) user_agent: Option<String>,
}

/// Everything the emulator knows.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) organizations: HashMap<String, Organization>,
    pub(crate) by_external_id: HashMap<String, String>,
    pub(crate) domain_owner: HashMap<String, String>,
    pub(crate) links: HashMap<String, Link>,
    link_expiry: VecDeque<(SystemTime, String)>,
    /// SSO connections by id; ids are ULIDs, so the map is in creation order.
    pub(crate) connections: BTreeMap<String, Connection>,
    /// Directories by id, in creation order.
    pub(crate) directories: BTreeMap<String, Directory>,
    /// Audit log configurations by organization id; an organization has none until audit logs
    /// are enabled or a log stream is created for it.
    pub(crate) audit_configs: HashMap<String, AuditConfig>,
    /// The key provider of each organization's verified customer-managed key.
    pub(crate) byok_keys: HashMap<String, String>,
    /// IT contacts, the invitations sent to them and the outbox those went through.
    pub(crate) invites: Invites,
    /// What the Events API lists.
    pub(crate) events: EventLog,
    pub(crate) idempotency: HashMap<String, IdempotentAnswer>,
    /// Whether POSTs replay answers by `Idempotency-Key` (off: WorkOS's documented behaviour).
    pub(crate) replay_idempotency_keys: bool,
    pub(crate) faults: Vec<Fault>,
    next_fault_id: u64,
    pub(crate) counts: HashMap<String, u64>,
    pub(crate) recent: VecDeque<RequestRecord>,
    pub(crate) rng: StdRng,
    last_ulid: Ulid,
    pub(crate) clock_offset: Duration,
}

impl Store {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        Self {
            organizations: HashMap::new(),
            by_external_id: HashMap::new(),
            domain_owner: HashMap::new(),
            links: HashMap::new(),
            link_expiry: VecDeque::new(),
            connections: BTreeMap::new(),
            directories: BTreeMap::new(),
            audit_configs: HashMap::new(),
            byok_keys: HashMap::new(),
            invites: Invites::default(),
            events: EventLog::default(),
            idempotency: HashMap::new(),
            replay_idempotency_keys: false,
            faults: Vec::new(),
            next_fault_id: 1,
            counts: HashMap::new(),
            recent: VecDeque::new(),
            rng: match seed {
                Some(seed) => StdRng::seed_from_u64(seed),
                None => StdRng::from_os_rng(),
            },
            last_ulid: Ulid::nil(),
            clock_offset: Duration::ZERO,
        }
    }

    /// The emulator's clock: real time plus whatever the control API advanced it by.
    pub(crate) fn now(&self) -> SystemTime {
        SystemTime::now() + self.clock_offset
    }

    /// A new id with WorkOS's shape: `prefix` + a ULID. ULIDs from one store are strictly
    /// increasing, so ordering by id is ordering by creation.
    pub(crate) fn new_id(&mut self, prefix: &str) -> String {
        let millis = self
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let candidate = Ulid::from_parts(millis, self.rng.random());
        let ulid = if candidate > self.last_ulid {
            candidate
        } else {
            self.last_ulid.increment().unwrap_or(candidate)
        };
        self.last_ulid = ulid;
        format!("{prefix}{ulid}")
    }

    /// A random alphanumeric token.
    pub(crate) fn token(&mut self, len: usize) -> String {
        (&mut self.rng)
            .sample_iter(Alphanumeric)
            .take(len)
            .map(char::from)
            .collect()
    }

    /// A request id in the UUID form WorkOS uses.
    pub(crate) fn request_id(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .to_string()
    }

    /// A new pending domain for `organization_id`.
    pub(crate) fn new_domain(
        &mut self,
        organization_id: &str,
        domain: &str,
        state: DomainState,
    ) -> Domain {
        let now = self.now();
        let id = self.new_id("org_domain_");
        let prefix_tail = organization_id.get(organization_id.len().saturating_sub(6)..);
        Domain {
            id,
            organization_id: organization_id.to_owned(),
            domain: domain.to_ascii_lowercase(),
            state,
            manual: state == DomainState::Verified,
            verification_prefix: format!(
                "workos-domain-verification-{}",
                prefix_tail.unwrap_or_default().to_ascii_lowercase()
            ),
            verification_token: self.token(25),
            created_at: now,
            updated_at: now,
        }
    }

    /// Stores a link minted through the API ([`LINK_LIFETIME`]) and forgets links that expired
    /// long enough ago to matter to nobody. Invitation links live longer and are kept in
    /// `links` without this bookkeeping: they go when their organization does, or on reset.
    pub(crate) fn insert_link(&mut self, token: String, link: Link) {
        let now = self.now();
        // Keep expired links for one more lifetime so an expired link reads as expired rather
        // than unknown, then drop them so memory stays bounded under load.
        while let Some((expiry, _)) = self.link_expiry.front() {
            if *expiry + LINK_LIFETIME > now && self.link_expiry.len() < MAX_LINKS {
                break;
            }
            if let Some((_, old)) = self.link_expiry.pop_front() {
                self.links.remove(&old);
            }
        }
        self.link_expiry
            .push_back((link.issued_at + LINK_LIFETIME, token.clone()));
        self.links.insert(token, link);
    }

    /// A remembered idempotent answer, if the key is known and fresh.
    pub(crate) fn idempotent_answer(&mut self, key: &str) -> Option<&IdempotentAnswer> {
        let now = self.now();
        if let Some(answer) = self.idempotency.get(key)
            && answer.stored_at + IDEMPOTENCY_TTL <= now
        {
            self.idempotency.remove(key);
        }
        self.idempotency.get(key)
    }

    /// Adds a fault and returns its id.
    pub(crate) fn add_fault(&mut self, mut fault: Fault) -> u64 {
        fault.id = self.next_fault_id;
        self.next_fault_id += 1;
        let id = fault.id;
        self.faults.push(fault);
        id
    }

    /// The fault that applies to this request, if any, consuming one use of a counted fault.
    pub(crate) fn take_fault(&mut self, route: &str) -> Option<Fault> {
        let mut chosen = None;
        for (index, fault) in self.faults.iter().enumerate() {
            if fault.route != "*" && fault.route != route {
                continue;
            }
            if fault.remaining == Some(0) {
                continue;
            }
            if fault.probability < 1.0 && !self.rng.random_bool(fault.probability.max(0.0)) {
                continue;
            }
            chosen = Some(index);
            break;
        }
        let index = chosen?;
        let fault = &mut self.faults[index];
        if let Some(remaining) = fault.remaining.as_mut() {
            *remaining -= 1;
        }
        Some(fault.clone())
    }

    /// Counts a request as it arrives, so a request still in progress is already counted.
    pub(crate) fn count(&mut self, route: &str) {
        *self.counts.entry(route.to_owned()).or_default() += 1;
    }

    /// Keeps a finished request in the recent log.
    pub(crate) fn record(&mut self, record: RequestRecord) {
        if self.recent.len() == REQUEST_LOG_CAPACITY {
            self.recent.pop_front();
        }
        self.recent.push_back(record);
    }

    /// Forgets everything, reseeding the random source.
    pub(crate) fn reset(&mut self, seed: Option<u64>) {
        *self = Self::new(seed);
    }
}

/// A timestamp exactly as WorkOS writes it: ISO-8601 UTC with milliseconds and `Z`.
pub(crate) fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}
