//! Setup status: how far each intent's setup has come, the WorkOS objects behind that answer, and
//! the WorkOS events that change it. The rules that turn WorkOS's state into a [`SetupState`] live
//! here, pure, so they are read and tested in one place.
//!
//! WorkOS's enums grow: every state is a known variant or `Unknown`, and the raw string travels
//! with it, so a value this gateway has never seen is reported, never an error.

use std::time::{Duration, SystemTime};

use super::{Domain, DomainState, Intent, OrganizationId};

/// How far one intent's setup has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupState {
    /// Nothing configured yet.
    NotStarted,
    /// Configured, not yet proven.
    InProgress,
    /// Done.
    Complete,
    /// Configured but broken: the customer's admin must act again.
    NeedsAttention,
    /// No readable signal.
    Unknown,
}

/// One intent's state, with a short stable explanation such as `connection_active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntentStatus {
    /// The intent.
    pub intent: Intent,
    /// Its state.
    pub state: SetupState,
    /// Why, in a few words of snake case.
    pub detail: &'static str,
}

/// An SSO connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// The identity provider type is not chosen yet.
    RequiresType,
    /// Created, not configured.
    Draft,
    /// Configured; no successful sign-in yet.
    Validating,
    /// Signs users in.
    Active,
    /// Cannot sign users in.
    Inactive,
    /// Being deleted.
    Deleting,
    /// A state this gateway does not know.
    Unknown,
}

impl ConnectionState {
    /// Parses WorkOS's value.
    pub fn parse(raw: &str) -> Self {
        match raw {
            "requires_type" => Self::RequiresType,
            "draft" => Self::Draft,
            "validating" => Self::Validating,
            "active" => Self::Active,
            "inactive" => Self::Inactive,
            "deleting" => Self::Deleting,
            _ => Self::Unknown,
        }
    }
}

/// A directory's state in one vocabulary: WorkOS's REST API says `linked`/`unlinked` where its
/// events say `active`/`inactive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryState {
    /// Syncing (`linked`, or `active` in events).
    Linked,
    /// Being set up.
    Validating,
    /// The provider rejected the credentials.
    InvalidCredentials,
    /// Not syncing (`unlinked`, or `inactive` in events).
    Unlinked,
    /// Being deleted.
    Deleting,
    /// A state this gateway does not know.
    Unknown,
}

impl DirectoryState {
    /// Parses either vocabulary.
    pub fn parse(raw: &str) -> Self {
        match raw {
            "linked" | "active" => Self::Linked,
            "validating" => Self::Validating,
            "invalid_credentials" => Self::InvalidCredentials,
            "unlinked" | "inactive" => Self::Unlinked,
            "deleting" => Self::Deleting,
            _ => Self::Unknown,
        }
    }
}

/// A log stream's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStreamState {
    /// Delivering.
    Active,
    /// Configured, not delivering.
    Inactive,
    /// Delivery fails.
    Error,
    /// The configuration is invalid.
    Invalid,
    /// A state this gateway does not know.
    Unknown,
}

impl LogStreamState {
    /// Parses WorkOS's value.
    pub fn parse(raw: &str) -> Self {
        match raw {
            "active" => Self::Active,
            "inactive" => Self::Inactive,
            "error" => Self::Error,
            "invalid" => Self::Invalid,
            _ => Self::Unknown,
        }
    }
}

/// An SSO connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// WorkOS id.
    pub id: String,
    /// Provider type, as WorkOS names it.
    pub connection_type: String,
    /// Display name.
    pub name: String,
    /// State.
    pub state: ConnectionState,
    /// State as WorkOS sent it.
    pub state_raw: String,
    /// Domains routed to it.
    pub domains: Vec<String>,
    /// Creation time, when reported.
    pub created_at: Option<SystemTime>,
    /// Last change, when reported.
    pub updated_at: Option<SystemTime>,
}

/// A Directory Sync directory.
#[derive(Debug, Clone)]
pub struct Directory {
    /// WorkOS id.
    pub id: String,
    /// Provider type, as WorkOS names it.
    pub directory_type: String,
    /// Display name.
    pub name: String,
    /// State, normalised.
    pub state: DirectoryState,
    /// State as WorkOS sent it.
    pub state_raw: String,
    /// Creation time, when reported.
    pub created_at: Option<SystemTime>,
    /// Last change, when reported.
    pub updated_at: Option<SystemTime>,
}

/// A log stream.
#[derive(Debug, Clone)]
pub struct LogStream {
    /// WorkOS id.
    pub id: String,
    /// Destination type, as WorkOS names it.
    pub stream_type: String,
    /// State.
    pub state: LogStreamState,
    /// State as WorkOS sent it.
    pub state_raw: String,
    /// Last successful delivery.
    pub last_synced_at: Option<SystemTime>,
    /// Creation time, when reported.
    pub created_at: Option<SystemTime>,
}

/// An organization's audit log configuration.
#[derive(Debug, Clone)]
pub struct AuditLogConfig {
    /// The trail's state as WorkOS sent it (`active`, `inactive`, `disabled`).
    pub state: String,
    /// Retention in days, when reported.
    pub retention_period_in_days: Option<u32>,
    /// The log stream, when one is configured.
    pub log_stream: Option<LogStream>,
}

/// The last event WorkOS recorded about a setup that has no REST state of its own (SAML
/// certificate renewal, the customer's encryption key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// The event name.
    pub name: String,
    /// `verified` of a key verification event.
    pub verified: Option<bool>,
}

/// An organization's setup status and the objects behind it. A part is `None` when no requested
/// intent needed it read.
#[derive(Debug, Clone)]
pub struct SetupStatus {
    /// The organization.
    pub organization_id: OrganizationId,
    /// One per requested intent, in enum order.
    pub intents: Vec<IntentStatus>,
    /// SSO connections.
    pub connections: Option<Vec<Connection>>,
    /// Directories.
    pub directories: Option<Vec<Directory>>,
    /// Domains.
    pub domains: Option<Vec<Domain>>,
    /// The audit log configuration: `Some(None)` when WorkOS has none.
    pub audit_log: Option<Option<AuditLogConfig>>,
    /// When it was read.
    pub read_at: SystemTime,
}

// === The rules ===

fn status(intent: Intent, state: SetupState, detail: &'static str) -> IntentStatus {
    IntentStatus {
        intent,
        state,
        detail,
    }
}

/// `sso`: complete when any connection is active (an organization may have several).
pub fn sso_status(connections: &[Connection]) -> IntentStatus {
    use ConnectionState as C;
    let any = |state: C| connections.iter().any(|c| c.state == state);
    let (state, detail) = if any(C::Active) {
        (SetupState::Complete, "connection_active")
    } else if any(C::Validating) {
        (SetupState::InProgress, "connection_validating")
    } else if any(C::Draft) || any(C::RequiresType) {
        (SetupState::InProgress, "connection_draft")
    } else if any(C::Inactive) {
        (SetupState::NeedsAttention, "connection_inactive")
    } else if any(C::Unknown) {
        (SetupState::Unknown, "connection_state_unknown")
    } else if connections.is_empty() {
        (SetupState::NotStarted, "no_connection")
    } else {
        (SetupState::NotStarted, "connection_deleting")
    };
    status(Intent::Sso, state, detail)
}

/// `dsync`: complete when any directory is linked; broken credentials or an unlinked directory
/// need the admin again (WorkOS sends no event for either).
pub fn dsync_status(directories: &[Directory]) -> IntentStatus {
    use DirectoryState as D;
    let any = |state: D| directories.iter().any(|d| d.state == state);
    let (state, detail) = if any(D::Linked) {
        (SetupState::Complete, "directory_linked")
    } else if any(D::InvalidCredentials) {
        (SetupState::NeedsAttention, "directory_invalid_credentials")
    } else if any(D::Validating) {
        (SetupState::InProgress, "directory_validating")
    } else if any(D::Unlinked) {
        (SetupState::NeedsAttention, "directory_unlinked")
    } else if any(D::Unknown) {
        (SetupState::Unknown, "directory_state_unknown")
    } else if directories.is_empty() {
        (SetupState::NotStarted, "no_directory")
    } else {
        (SetupState::NotStarted, "directory_deleting")
    };
    status(Intent::Dsync, state, detail)
}

/// `domain_verification`: complete when every domain is verified (`legacy_verified` counts);
/// a failed domain needs the admin again.
pub fn domain_status(domains: &[Domain]) -> IntentStatus {
    let any = |state: DomainState| domains.iter().any(|d| d.state == state);
    let verified =
        |d: &Domain| matches!(d.state, DomainState::Verified | DomainState::LegacyVerified);
    let (state, detail) = if domains.is_empty() {
        (SetupState::NotStarted, "no_domain")
    } else if any(DomainState::Failed) {
        (SetupState::NeedsAttention, "domain_verification_failed")
    } else if domains.iter().all(verified) {
        (SetupState::Complete, "domains_verified")
    } else if any(DomainState::Pending) {
        (SetupState::InProgress, "domain_pending")
    } else {
        (SetupState::Unknown, "domain_state_unknown")
    };
    status(Intent::DomainVerification, state, detail)
}

/// `audit_logs` has nothing to finish: an active trail is as complete as it gets.
pub fn audit_logs_status(config: Option<&AuditLogConfig>) -> IntentStatus {
    let (state, detail) = match config.map(|c| c.state.as_str()) {
        None => (SetupState::NotStarted, "no_audit_log_configuration"),
        Some("active") => (SetupState::Complete, "audit_logs_active"),
        Some("inactive") => (SetupState::NotStarted, "audit_logs_inactive"),
        Some("disabled") => (SetupState::NotStarted, "audit_logs_disabled"),
        Some(_) => (SetupState::Unknown, "audit_logs_state_unknown"),
    };
    status(Intent::AuditLogs, state, detail)
}

/// `log_streams`: complete when the stream is active.
pub fn log_streams_status(config: Option<&AuditLogConfig>) -> IntentStatus {
    let stream = config.and_then(|c| c.log_stream.as_ref());
    let (state, detail) = match stream.map(|s| s.state) {
        None => (SetupState::NotStarted, "no_log_stream"),
        Some(LogStreamState::Active) => (SetupState::Complete, "log_stream_active"),
        Some(LogStreamState::Inactive) => (SetupState::InProgress, "log_stream_inactive"),
        Some(LogStreamState::Error) => (SetupState::NeedsAttention, "log_stream_error"),
        Some(LogStreamState::Invalid) => (SetupState::NeedsAttention, "log_stream_invalid"),
        Some(LogStreamState::Unknown) => (SetupState::Unknown, "log_stream_state_unknown"),
    };
    status(Intent::LogStreams, state, detail)
}

/// `certificate_renewal`, from the last certificate event within WorkOS's event retention.
/// WorkOS announces an expiring certificate repeatedly, so no event means none is due.
pub fn certificate_status(last: Option<&Signal>) -> IntentStatus {
    let (state, detail) = match last.map(|s| s.name.as_str()) {
        None => (SetupState::NotStarted, "no_renewal_due"),
        Some(CERTIFICATE_RENEWED) => (SetupState::Complete, "certificate_renewed"),
        Some(_) => (SetupState::NeedsAttention, "certificate_renewal_required"),
    };
    status(Intent::CertificateRenewal, state, detail)
}

/// `bring_your_own_key`, from the last key event within WorkOS's event retention. WorkOS has no
/// REST state for the key, so without an event the state is unknown.
pub fn key_status(last: Option<&Signal>) -> IntentStatus {
    let (state, detail) = match last {
        None => (SetupState::Unknown, "no_key_event_in_retention"),
        Some(signal) if signal.name == KEY_DELETED => (SetupState::NotStarted, "key_deleted"),
        Some(Signal {
            verified: Some(true),
            ..
        }) => (SetupState::Complete, "key_verified"),
        Some(_) => (SetupState::NeedsAttention, "key_verification_failed"),
    };
    status(Intent::BringYourOwnKey, state, detail)
}

// === Events ===

const CERTIFICATE_RENEWED: &str = "connection.saml_certificate_renewed";
const KEY_DELETED: &str = "vault.byok_key.deleted";

/// Every WorkOS event that changes an intent's setup, with the intent. These are the names the
/// gateway asks WorkOS's Events API for: only names WorkOS is known to accept.
pub const SETUP_EVENTS: [(&str, Intent); 14] = [
    ("connection.activated", Intent::Sso),
    ("connection.deactivated", Intent::Sso),
    ("connection.deleted", Intent::Sso),
    ("dsync.activated", Intent::Dsync),
    ("dsync.deleted", Intent::Dsync),
    ("organization_domain.created", Intent::DomainVerification),
    ("organization_domain.updated", Intent::DomainVerification),
    ("organization_domain.deleted", Intent::DomainVerification),
    ("organization_domain.verified", Intent::DomainVerification),
    (
        "organization_domain.verification_failed",
        Intent::DomainVerification,
    ),
    (
        "connection.saml_certificate_renewal_required",
        Intent::CertificateRenewal,
    ),
    (CERTIFICATE_RENEWED, Intent::CertificateRenewal),
    (
        "vault.byok_key.verification_completed",
        Intent::BringYourOwnKey,
    ),
    (KEY_DELETED, Intent::BringYourOwnKey),
];

/// The intent a setup event concerns.
pub fn event_intent(name: &str) -> Option<Intent> {
    SETUP_EVENTS
        .iter()
        .find(|(event, _)| *event == name)
        .map(|(_, intent)| *intent)
}

/// The names of the events about `intents`.
pub fn event_names(intents: &[Intent]) -> Vec<&'static str> {
    SETUP_EVENTS
        .iter()
        .filter(|(_, intent)| intents.contains(intent))
        .map(|(name, _)| *name)
        .collect()
}

/// A WorkOS event about an organization's setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupEvent {
    /// WorkOS event id.
    pub id: String,
    /// Event name.
    pub name: String,
    /// The intent it concerns.
    pub intent: Intent,
    /// The organization, when the event names one.
    pub organization_id: Option<String>,
    /// The object it concerns (connection, directory, domain; the organization for key events).
    pub object_id: String,
    /// `verified` of a key verification event.
    pub verified: Option<bool>,
    /// When WorkOS recorded it.
    pub created_at: SystemTime,
}

impl SetupEvent {
    /// The event as JSON, to pass between replicas.
    pub fn to_json(&self) -> String {
        let millis = self
            .created_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "organization_id": self.organization_id,
            "object_id": self.object_id,
            "verified": self.verified,
            "created_at_ms": millis,
        })
        .to_string()
    }

    /// Reads [`SetupEvent::to_json`]'s output; `None` for anything else.
    pub fn from_json(text: &str) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let name = value.get("name")?.as_str()?.to_owned();
        Some(Self {
            id: value.get("id")?.as_str()?.to_owned(),
            intent: event_intent(&name)?,
            name,
            organization_id: value
                .get("organization_id")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            object_id: value
                .get("object_id")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            verified: value.get("verified").and_then(serde_json::Value::as_bool),
            created_at: SystemTime::UNIX_EPOCH
                + Duration::from_millis(value.get("created_at_ms")?.as_u64()?),
        })
    }

    /// What the event says by itself, for intents WorkOS has no REST state for.
    pub fn signal(&self) -> Signal {
        Signal {
            name: self.name.clone(),
            verified: self.verified,
        }
    }
}

/// A query of WorkOS's Events API.
#[derive(Debug, Clone)]
pub struct EventQuery {
    /// Event names; never empty.
    pub names: Vec<&'static str>,
    /// Only this organization's events.
    pub organization_id: Option<OrganizationId>,
    /// Where to start.
    pub from: Position,
    /// Page size, 1 to 100.
    pub limit: u8,
}

/// One page of events, oldest first.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// Events WorkOS sent that concern setup, in order.
    pub events: Vec<SetupEvent>,
    /// The id of the last event on the page, whatever its name: where the next page starts.
    pub last_id: Option<String>,
    /// How many events the page held, including any this gateway does not understand.
    pub len: usize,
}

/// How long WorkOS keeps events (its documentation says 30 days in one place and 90 in
/// another; the shorter is assumed).
pub const EVENT_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// A position in WorkOS's event log: after an event, or from a point in time (before the first
/// event was seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// Events recorded at or after this time.
    Since(SystemTime),
    /// Events after this event id.
    After(String),
}

/// A resume cursor that could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadCursor;

impl Position {
    /// From now, to the millisecond (what a cursor holds, so the gateway knows its own).
    pub fn since_now() -> Self {
        let millis = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Self::Since(SystemTime::UNIX_EPOCH + Duration::from_millis(millis as u64))
    }

    /// The opaque cursor handed to watchers.
    pub fn encode(&self) -> String {
        match self {
            Self::Since(time) => {
                let millis = time
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                format!("t1.{millis}")
            }
            Self::After(id) => format!("a1.{id}"),
        }
    }

    /// Reads a cursor made by [`Position::encode`].
    pub fn decode(cursor: &str) -> Result<Self, BadCursor> {
        if let Some(millis) = cursor.strip_prefix("t1.") {
            let millis: u64 = millis.parse().map_err(|_| BadCursor)?;
            return Ok(Self::Since(
                SystemTime::UNIX_EPOCH + Duration::from_millis(millis),
            ));
        }
        let id = cursor.strip_prefix("a1.").ok_or(BadCursor)?;
        let well_formed = id.len() <= 64
            && id.starts_with("event_")
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if well_formed {
            Ok(Self::After(id.to_owned()))
        } else {
            Err(BadCursor)
        }
    }
}

#[cfg(test)]
mod tests;
