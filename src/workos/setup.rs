//! The WorkOS reads behind setup status: connections, directories, the audit log configuration
//! and the Events API. Their JSON shapes stay in this file; callers get `crate::domain::setup`.
//!
//! Enums are read as strings and classified in the domain, so a state WorkOS adds tomorrow is
//! reported as unknown, never a decoding failure. Unknown keys are ignored.

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::Value;

use super::{
    Call, Client, Error,
    endpoints::decode,
    transport::{Family, Route},
    with_segment,
};
use crate::domain::{
    OrganizationId,
    setup::{
        AuditLogConfig, Connection, ConnectionState, Directory, DirectoryState, EventPage,
        EventQuery, LogStream, LogStreamState, Position, SetupEvent, event_intent,
    },
};

static LIST_CONNECTIONS: Route = Route::new("GET /connections", Family::Setup);
static LIST_DIRECTORIES: Route = Route::new("GET /directories", Family::Setup);
static AUDIT_LOG_CONFIGURATION: Route = Route::new(
    "GET /organizations/{id}/audit_log_configuration",
    Family::Setup,
);
static LIST_EVENTS: Route = Route::new("GET /events", Family::Setup);
static POLL_EVENTS: Route = Route::new("GET /events", Family::Events);

/// Pages read at most of one organization's connections, directories or IT contacts: 1,000
/// objects, far more than an organization has; past it the answer is what was read.
const MAX_PAGES: usize = 10;

#[derive(Debug, Deserialize)]
struct ListWire<T> {
    data: Vec<T>,
    #[serde(default)]
    list_metadata: ListMetadataWire,
}

#[derive(Debug, Default, Deserialize)]
struct ListMetadataWire {
    #[serde(default)]
    after: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConnectionWire {
    id: String,
    #[serde(default)]
    connection_type: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    domains: Vec<ConnectionDomainWire>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConnectionDomainWire {
    domain: String,
}

#[derive(Debug, Deserialize)]
struct DirectoryWire {
    id: String,
    #[serde(default, rename = "type")]
    directory_type: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AuditLogConfigWire {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    retention_period_in_days: Option<u32>,
    #[serde(default)]
    log_stream: Option<LogStreamWire>,
}

#[derive(Debug, Deserialize)]
struct LogStreamWire {
    id: String,
    #[serde(default, rename = "type")]
    stream_type: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    last_synced_at: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EventWire {
    id: String,
    event: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    created_at: Option<String>,
}

/// A timestamp, read tolerantly: WorkOS has written both `2026-01-15T12:00:00.000Z` and
/// `2023-04-28 20:05:31.093`.
fn time(value: Option<&str>) -> Option<SystemTime> {
    value.and_then(|v| humantime::parse_rfc3339_weak(v.trim_end_matches('Z')).ok())
}

impl From<ConnectionWire> for Connection {
    fn from(wire: ConnectionWire) -> Self {
        let state_raw = wire.state.unwrap_or_default();
        Self {
            id: wire.id,
            connection_type: wire.connection_type.unwrap_or_default(),
            name: wire.name.unwrap_or_default(),
            state: ConnectionState::parse(&state_raw),
            state_raw,
            domains: wire.domains.into_iter().map(|d| d.domain).collect(),
            created_at: time(wire.created_at.as_deref()),
            updated_at: time(wire.updated_at.as_deref()),
        }
    }
}

impl From<DirectoryWire> for Directory {
    fn from(wire: DirectoryWire) -> Self {
        let state_raw = wire.state.unwrap_or_default();
        Self {
            id: wire.id,
            directory_type: wire.directory_type.unwrap_or_default(),
            name: wire.name.unwrap_or_default(),
            state: DirectoryState::parse(&state_raw),
            state_raw,
            created_at: time(wire.created_at.as_deref()),
            updated_at: time(wire.updated_at.as_deref()),
        }
    }
}

impl From<AuditLogConfigWire> for AuditLogConfig {
    fn from(wire: AuditLogConfigWire) -> Self {
        Self {
            state: wire.state.unwrap_or_default(),
            retention_period_in_days: wire.retention_period_in_days,
            log_stream: wire.log_stream.map(|stream| {
                let state_raw = stream.state.unwrap_or_default();
                LogStream {
                    id: stream.id,
                    stream_type: stream.stream_type.unwrap_or_default(),
                    state: LogStreamState::parse(&state_raw),
                    state_raw,
                    last_synced_at: time(stream.last_synced_at.as_deref()),
                    created_at: time(stream.created_at.as_deref()),
                }
            }),
        }
    }
}

/// The string at `path` in `data`.
fn text<'a>(data: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(data, |value, key| value.get(key))
        .and_then(Value::as_str)
}

impl EventWire {
    /// The event, when it is one of the setup events; `None` for any other name.
    fn into_setup_event(self) -> Option<SetupEvent> {
        let intent = event_intent(&self.event)?;
        let data = &self.data;
        // Where the organization and the object are depends on the event's payload shape.
        let (organization_id, object_id) = if let Some(domain) = data.get("organization_domain") {
            (text(domain, &["organization_id"]), text(domain, &["id"]))
        } else if let Some(connection) = data.get("connection") {
            (
                text(connection, &["organization_id"]),
                text(connection, &["id"]),
            )
        } else if self.event.starts_with("vault.") {
            let organization = text(data, &["organization_id"]);
            (organization, organization)
        } else {
            (text(data, &["organization_id"]), text(data, &["id"]))
        };
        Some(SetupEvent {
            intent,
            organization_id: organization_id.map(str::to_owned),
            object_id: object_id.unwrap_or_default().to_owned(),
            verified: data.get("verified").and_then(Value::as_bool),
            created_at: time(self.created_at.as_deref()).unwrap_or_else(SystemTime::now),
            id: self.id,
            name: self.event,
        })
    }
}

impl Client {
    /// Every page of a list of one organization's objects.
    /// Every page (up to 1,000 objects) of a WorkOS list; `base` carries the filters.
    pub(super) async fn list_all<T: serde::de::DeserializeOwned>(
        &self,
        call: &mut Call,
        route: &'static Route,
        base: &url::Url,
    ) -> Result<Vec<T>, Error> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut url = base.clone();
            {
                let mut pairs = url.query_pairs_mut();
                pairs.append_pair("limit", "100");
                pairs.append_pair("order", "desc");
                if let Some(after) = &after {
                    pairs.append_pair("after", after);
                }
            }
            let answer = self.send(call, route, url, None, None).await?;
            let page: ListWire<T> = decode(&answer)?;
            let full = page.data.len() == 100;
            all.extend(page.data);
            match page.list_metadata.after {
                Some(next) if full => after = Some(next),
                _ => break,
            }
        }
        Ok(all)
    }

    /// `GET /connections?organization_id=`: the organization's SSO connections.
    pub async fn list_connections(
        &self,
        call: &mut Call,
        organization_id: &OrganizationId,
    ) -> Result<Vec<Connection>, Error> {
        let mut url = self.inner.urls.connections.clone();
        url.query_pairs_mut()
            .append_pair("organization_id", organization_id.as_str());
        let wires: Vec<ConnectionWire> = self.list_all(call, &LIST_CONNECTIONS, &url).await?;
        Ok(wires.into_iter().map(Connection::from).collect())
    }

    /// `GET /directories?organization_id=`: the organization's directories.
    pub async fn list_directories(
        &self,
        call: &mut Call,
        organization_id: &OrganizationId,
    ) -> Result<Vec<Directory>, Error> {
        let mut url = self.inner.urls.directories.clone();
        url.query_pairs_mut()
            .append_pair("organization_id", organization_id.as_str());
        let wires: Vec<DirectoryWire> = self.list_all(call, &LIST_DIRECTORIES, &url).await?;
        Ok(wires.into_iter().map(Directory::from).collect())
    }

    /// `GET /organizations/{id}/audit_log_configuration`; `None` when WorkOS has none (404).
    pub async fn audit_log_configuration(
        &self,
        call: &mut Call,
        organization_id: &OrganizationId,
    ) -> Result<Option<AuditLogConfig>, Error> {
        let mut url = with_segment(&self.inner.urls.organizations, organization_id.as_str());
        if let Ok(mut path) = url.path_segments_mut() {
            path.push("audit_log_configuration");
        }
        match self
            .send(call, &AUDIT_LOG_CONFIGURATION, url, None, None)
            .await
        {
            Ok(answer) => Ok(Some(decode::<AuditLogConfigWire>(&answer)?.into())),
            Err(Error::Api { status: 404, .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// One page of `GET /events` for a status read.
    pub async fn list_events(
        &self,
        call: &mut Call,
        query: &EventQuery,
    ) -> Result<EventPage, Error> {
        self.events_page(call, query, &LIST_EVENTS).await
    }

    /// One page of `GET /events` for the events poller, on a breaker of its own.
    pub async fn poll_events(
        &self,
        call: &mut Call,
        query: &EventQuery,
    ) -> Result<EventPage, Error> {
        self.events_page(call, query, &POLL_EVENTS).await
    }

    /// One page of `GET /events`, oldest first. Names go comma-joined, as the official SDKs
    /// send them. `range_start` is sent only for a time position, never with `after` (WorkOS
    /// documents them as exclusive). Each event is read on its own: one that cannot be read is
    /// skipped (the cursor still moves past it), never the whole page.
    async fn events_page(
        &self,
        call: &mut Call,
        query: &EventQuery,
        route: &'static Route,
    ) -> Result<EventPage, Error> {
        let mut url = self.inner.urls.events.clone();
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("events", &query.names.join(","));
            pairs.append_pair("limit", &query.limit.to_string());
            if let Some(organization_id) = &query.organization_id {
                pairs.append_pair("organization_id", organization_id.as_str());
            }
            match &query.from {
                Position::After(id) => pairs.append_pair("after", id),
                Position::Since(time) => pairs.append_pair(
                    "range_start",
                    &humantime::format_rfc3339_millis(*time).to_string(),
                ),
            };
        }
        let answer = self.send(call, route, url, None, None).await?;
        let page: ListWire<Value> = decode(&answer)?;
        let len = page.data.len();
        let last_id = page
            .data
            .iter()
            .rev()
            .find_map(|e| e.get("id").and_then(Value::as_str))
            .map(str::to_owned);
        Ok(EventPage {
            events: page
                .data
                .into_iter()
                .filter_map(|event| serde_json::from_value::<EventWire>(event).ok())
                .filter_map(EventWire::into_setup_event)
                .collect(),
            last_id,
            len,
        })
    }

    /// Drops an organization from the cache, so the next read sees a change WorkOS announced.
    pub async fn forget_organization(&self, organization_id: &str) {
        self.inner.cache.forget(organization_id).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: Value) -> Option<SetupEvent> {
        serde_json::from_value::<EventWire>(json)
            .expect("event")
            .into_setup_event()
    }

    #[test]
    fn every_payload_shape_yields_its_organization_and_object() {
        let domain = event(serde_json::json!({
            "id": "event_1", "event": "organization_domain.verification_failed",
            "created_at": "2026-01-15T12:00:00.000Z",
            "data": {"reason": "domain_verification_period_expired",
                     "organization_domain": {"id": "org_domain_1", "organization_id": "org_1"}}
        }))
        .expect("setup event");
        assert_eq!(domain.organization_id.as_deref(), Some("org_1"));
        assert_eq!(domain.object_id, "org_domain_1");
        let certificate = event(serde_json::json!({
            "id": "event_2", "event": "connection.saml_certificate_renewed",
            "created_at": "2023-04-28 20:05:31.093",
            "data": {"connection": {"id": "conn_1", "organization_id": "org_2"}}
        }))
        .expect("setup event");
        assert_eq!(certificate.organization_id.as_deref(), Some("org_2"));
        assert!(certificate.created_at < SystemTime::now());
        let key = event(serde_json::json!({
            "id": "event_3", "event": "vault.byok_key.verification_completed",
            "created_at": "2026-01-15T12:00:00.000Z",
            "data": {"organization_id": "org_3", "key_provider": "AWS_KMS", "verified": false}
        }))
        .expect("setup event");
        assert_eq!(
            (key.organization_id.as_deref(), key.verified),
            (Some("org_3"), Some(false))
        );
        assert!(
            event(serde_json::json!({"id": "event_4", "event": "user.created", "data": {}}))
                .is_none()
        );
    }

    #[test]
    fn states_never_seen_before_are_carried_raw() {
        let wire: ConnectionWire = serde_json::from_value(serde_json::json!({
            "id": "conn_1", "state": "quarantined", "domains": [], "extra": {"ignored": true}
        }))
        .expect("connection");
        let connection = Connection::from(wire);
        assert_eq!(connection.state, ConnectionState::Unknown);
        assert_eq!(connection.state_raw, "quarantined");
    }
}
