//! The state changes an Admin Portal setup makes, each with the events WorkOS announces for it.
//! The portal's forms and the control API call these, so a browser and a test script leave the
//! emulator in the same state. Every step checks first and changes after: a refused step
//! changes nothing and emits nothing.
//!
//! A step that would change nothing (activating an active connection, enabling enabled audit
//! logs) is refused as a conflict rather than silently accepted, so a test that assumed the
//! wrong state hears about it.

use std::time::Duration;

use serde_json::{Value, json};

use super::{
    AuditConfig, AuditState, Connection, ConnectionState, Directory, DirectoryState, LogStream,
    LogStreamState,
};
use crate::emulator::{
    events,
    state::{Domain, DomainState, Organization, Store, timestamp},
};

/// What a step did: the ids of the events it emitted and the object it changed, named the way
/// the control API answers (`"connection"`, `"directory"`, ...).
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) events: Vec<String>,
    pub(crate) changed: (&'static str, Value),
}

/// Why a step was refused.
#[derive(Debug)]
pub(crate) enum SetupError {
    /// The organization does not exist.
    NoOrganization,
    /// A field names something that is not there or not allowed: `(field, message)`.
    Invalid(&'static str, String),
    /// The organization's setup is not in a state the step applies to.
    Conflict(String),
}

type Step = Result<Outcome, SetupError>;

fn organization<'a>(
    store: &'a Store,
    organization_id: &str,
) -> Result<&'a Organization, SetupError> {
    store
        .organizations
        .get(organization_id)
        .ok_or(SetupError::NoOrganization)
}

// === SSO ===

/// Configures a new connection: `validating` until its first sign-in. WorkOS announces no
/// event for this.
pub(crate) fn configure_connection(
    store: &mut Store,
    organization_id: &str,
    provider: &str,
) -> Step {
    let connection = new_connection(store, organization_id, provider)?;
    Ok(Outcome {
        events: Vec::new(),
        changed: ("connection", connection.to_json()),
    })
}

fn new_connection(
    store: &mut Store,
    organization_id: &str,
    provider: &str,
) -> Result<Connection, SetupError> {
    let organization = organization(store, organization_id)?;
    let name = organization.name.clone();
    let domains = organization
        .domains
        .iter()
        .map(|d| (d.id.clone(), d.domain.clone()))
        .collect();
    let now = store.now();
    let connection = Connection {
        id: store.new_id("conn_"),
        organization_id: organization_id.to_owned(),
        connection_type: provider.to_owned(),
        name,
        state: ConnectionState::Validating,
        domains,
        external_key: store.token(20),
        created_at: now,
        updated_at: now,
    };
    store
        .connections
        .insert(connection.id.clone(), connection.clone());
    Ok(connection)
}

/// The connection a step names, or the organization's newest one that `fits`.
fn pick_connection(
    store: &Store,
    organization_id: &str,
    connection_id: Option<&str>,
    fits: impl Fn(&Connection) -> bool,
) -> Result<Option<String>, SetupError> {
    organization(store, organization_id)?;
    if let Some(id) = connection_id {
        return match store.connections.get(id) {
            Some(c) if c.organization_id == organization_id => Ok(Some(id.to_owned())),
            _ => Err(SetupError::Invalid(
                "connection_id",
                format!("{id} is not a connection of {organization_id}"),
            )),
        };
    }
    Ok(store
        .connections
        .values()
        .rev()
        .find(|c| c.organization_id == organization_id && fits(c))
        .map(|c| c.id.clone()))
}

/// A successful test sign-in: the connection becomes `active` and `connection.activated` is
/// emitted. Without a connection to activate, one is configured first with `provider`.
pub(crate) fn activate_connection(
    store: &mut Store,
    organization_id: &str,
    connection_id: Option<&str>,
    provider: &str,
) -> Step {
    let id = match pick_connection(store, organization_id, connection_id, |_| true)? {
        Some(id) => id,
        None => new_connection(store, organization_id, provider)?.id,
    };
    change_connection(
        store,
        &id,
        ConnectionState::Active,
        events::CONNECTION_ACTIVATED,
    )
}

/// The connection stops authenticating: `inactive`, `connection.deactivated`.
pub(crate) fn deactivate_connection(
    store: &mut Store,
    organization_id: &str,
    connection_id: Option<&str>,
) -> Step {
    let picked = pick_connection(store, organization_id, connection_id, |c| {
        c.state == ConnectionState::Active
    })?;
    let id = picked.ok_or_else(|| {
        SetupError::Conflict(format!("{organization_id} has no active connection"))
    })?;
    change_connection(
        store,
        &id,
        ConnectionState::Inactive,
        events::CONNECTION_DEACTIVATED,
    )
}

fn change_connection(
    store: &mut Store,
    id: &str,
    state: ConnectionState,
    event: &'static str,
) -> Step {
    let now = store.now();
    let Some(connection) = store.connections.get_mut(id) else {
        return Err(SetupError::Conflict(format!("{id} no longer exists")));
    };
    if connection.state == state {
        return Err(SetupError::Conflict(format!(
            "{id} is already {}",
            state.as_str()
        )));
    }
    connection.state = state;
    connection.updated_at = now;
    let connection = connection.clone();
    let event_id = store.emit(
        event,
        Some(&connection.organization_id),
        connection.activation_payload(),
    );
    Ok(Outcome {
        events: vec![event_id],
        changed: ("connection", connection.to_json()),
    })
}

/// Deletes the named connection, or the organization's newest one.
pub(crate) fn delete_organization_connection(
    store: &mut Store,
    organization_id: &str,
    connection_id: Option<&str>,
) -> Step {
    let id = pick_connection(store, organization_id, connection_id, |_| true)?
        .ok_or_else(|| SetupError::Conflict(format!("{organization_id} has no connection")))?;
    delete_connection(store, &id)
        .ok_or_else(|| SetupError::Conflict(format!("{id} no longer exists")))
}

/// Deletes a connection and emits `connection.deleted`; `None` when there is no such connection.
pub(crate) fn delete_connection(store: &mut Store, id: &str) -> Option<Outcome> {
    let connection = store.connections.remove(id)?;
    let event_id = store.emit(
        events::CONNECTION_DELETED,
        Some(&connection.organization_id),
        connection.deleted_payload(),
    );
    Some(Outcome {
        events: vec![event_id],
        changed: ("deleted", json!({ "object": "connection", "id": id })),
    })
}

/// The organization's oldest SAML connection, or the named one, for certificate events.
fn saml_connection(
    store: &Store,
    organization_id: &str,
    connection_id: Option<&str>,
) -> Result<Connection, SetupError> {
    organization(store, organization_id)?;
    let found = match connection_id {
        Some(id) => store
            .connections
            .get(id)
            .filter(|c| c.organization_id == organization_id && c.is_saml()),
        None => store
            .connections
            .values()
            .find(|c| c.organization_id == organization_id && c.is_saml()),
    };
    match (found, connection_id) {
        (Some(connection), _) => Ok(connection.clone()),
        (None, Some(id)) => Err(SetupError::Invalid(
            "connection_id",
            format!("{id} is not a SAML connection of {organization_id}"),
        )),
        (None, None) => Err(SetupError::Conflict(format!(
            "{organization_id} has no SAML connection"
        ))),
    }
}

/// `connection.saml_certificate_renewal_required` for a certificate expiring in `days`.
pub(crate) fn certificate_renewal_required(
    store: &mut Store,
    organization_id: &str,
    connection_id: Option<&str>,
    certificate_type: &str,
    days: u64,
) -> Step {
    let connection = saml_connection(store, organization_id, connection_id)?;
    let expiry = store.now() + Duration::from_secs(days * 24 * 60 * 60);
    let event_id = store.emit(
        events::CERTIFICATE_RENEWAL_REQUIRED,
        Some(organization_id),
        json!({
            "connection": connection.reference(),
            "certificate": {
                "certificate_type": certificate_type,
                "expiry_date": timestamp(expiry),
                "is_expired": false,
            },
            "days_until_expiry": days,
        }),
    );
    Ok(Outcome {
        events: vec![event_id],
        changed: ("connection", connection.to_json()),
    })
}

/// `connection.saml_certificate_renewed`: a new certificate valid for a year.
pub(crate) fn certificate_renewed(
    store: &mut Store,
    organization_id: &str,
    connection_id: Option<&str>,
    certificate_type: &str,
) -> Step {
    let connection = saml_connection(store, organization_id, connection_id)?;
    let now = store.now();
    let event_id = store.emit(
        events::CERTIFICATE_RENEWED,
        Some(organization_id),
        json!({
            "connection": connection.reference(),
            "certificate": {
                "certificate_type": certificate_type,
                "expiry_date": timestamp(now + Duration::from_secs(365 * 24 * 60 * 60)),
            },
            "renewed_at": timestamp(now),
        }),
    );
    Ok(Outcome {
        events: vec![event_id],
        changed: ("connection", connection.to_json()),
    })
}

// === Directory Sync ===

/// A new directory, `linked` at once (the emulator has no provider to wait for), announced by
/// `dsync.activated`.
pub(crate) fn activate_directory(store: &mut Store, organization_id: &str, provider: &str) -> Step {
    let organization = organization(store, organization_id)?;
    let name = organization.name.clone();
    let domains = organization.domains.clone();
    let now = store.now();
    let directory = Directory {
        id: store.new_id("directory_"),
        organization_id: organization_id.to_owned(),
        external_key: store.token(16),
        name,
        domain: domains.first().map(|d| d.domain.clone()),
        directory_type: provider.to_owned(),
        state: DirectoryState::Linked,
        users_active: 0,
        users_inactive: 0,
        groups: 0,
        created_at: now,
        updated_at: now,
    };
    store
        .directories
        .insert(directory.id.clone(), directory.clone());
    let event_id = store.emit(
        events::DSYNC_ACTIVATED,
        Some(organization_id),
        directory.activated_payload(&domains),
    );
    Ok(Outcome {
        events: vec![event_id],
        changed: ("directory", directory.to_json()),
    })
}

fn pick_directory(
    store: &Store,
    organization_id: &str,
    directory_id: Option<&str>,
) -> Result<String, SetupError> {
    organization(store, organization_id)?;
    if let Some(id) = directory_id {
        return match store.directories.get(id) {
            Some(d) if d.organization_id == organization_id => Ok(id.to_owned()),
            _ => Err(SetupError::Invalid(
                "directory_id",
                format!("{id} is not a directory of {organization_id}"),
            )),
        };
    }
    store
        .directories
        .values()
        .rev()
        .find(|d| d.organization_id == organization_id)
        .map(|d| d.id.clone())
        .ok_or_else(|| SetupError::Conflict(format!("{organization_id} has no directory")))
}

/// The directory breaks (`invalid_credentials`) or is unlinked. WorkOS announces neither, so no
/// event is emitted: a consumer sees it only by polling.
pub(crate) fn set_directory_state(
    store: &mut Store,
    organization_id: &str,
    directory_id: Option<&str>,
    state: DirectoryState,
) -> Step {
    let id = pick_directory(store, organization_id, directory_id)?;
    let now = store.now();
    let Some(directory) = store.directories.get_mut(&id) else {
        return Err(SetupError::Conflict(format!("{id} no longer exists")));
    };
    if directory.state == state {
        return Err(SetupError::Conflict(format!(
            "{id} is already {}",
            state.as_str()
        )));
    }
    directory.state = state;
    directory.updated_at = now;
    Ok(Outcome {
        events: Vec::new(),
        changed: ("directory", directory.to_json()),
    })
}

/// Deletes the named directory, or the organization's newest one.
pub(crate) fn delete_organization_directory(
    store: &mut Store,
    organization_id: &str,
    directory_id: Option<&str>,
) -> Step {
    let id = pick_directory(store, organization_id, directory_id)?;
    delete_directory(store, &id)
        .ok_or_else(|| SetupError::Conflict(format!("{id} no longer exists")))
}

/// Deletes a directory and emits `dsync.deleted`; `None` when there is no such directory.
pub(crate) fn delete_directory(store: &mut Store, id: &str) -> Option<Outcome> {
    let directory = store.directories.remove(id)?;
    let event_id = store.emit(
        events::DSYNC_DELETED,
        Some(&directory.organization_id),
        directory.deleted_payload(),
    );
    Some(Outcome {
        events: vec![event_id],
        changed: ("deleted", json!({ "object": "directory", "id": id })),
    })
}

// === Domain verification ===

/// Emits what a new domain announces: `organization_domain.created`, and for a domain that
/// arrives verified (`domain_data` with `verified`) also `organization_domain.verified`, so a
/// consumer that listens only for verification sees every verified domain. (Whether WorkOS sends
/// both for such a domain is unconfirmed.)
pub(crate) fn announce_new_domain(store: &mut Store, domain: &Domain) -> Vec<String> {
    let mut ids = vec![store.emit(
        events::DOMAIN_CREATED,
        Some(&domain.organization_id),
        domain.to_json(),
    )];
    if domain.state == DomainState::Verified {
        ids.push(store.emit(
            events::DOMAIN_VERIFIED,
            Some(&domain.organization_id),
            domain.to_json(),
        ));
    }
    ids
}

/// Adds a pending domain, as the portal's domain form and `POST /organization_domains` do.
pub(crate) fn add_domain(store: &mut Store, organization_id: &str, domain: &str) -> Step {
    organization(store, organization_id)?;
    let domain = domain.to_ascii_lowercase();
    if store.domain_owner.contains_key(&domain) {
        return Err(SetupError::Conflict(format!(
            "The domain {domain} already exists."
        )));
    }
    let new = store.new_domain(organization_id, &domain, DomainState::Pending);
    store
        .domain_owner
        .insert(domain, organization_id.to_owned());
    if let Some(organization) = store.organizations.get_mut(organization_id) {
        organization.domains.push(new.clone());
    }
    Ok(Outcome {
        events: announce_new_domain(store, &new),
        changed: ("organization_domain", new.to_json()),
    })
}

/// The index of `domain` among the organization's domains.
fn domain_index(store: &Store, organization_id: &str, domain: &str) -> Result<usize, SetupError> {
    organization(store, organization_id)?
        .domains
        .iter()
        .position(|d| d.domain.eq_ignore_ascii_case(domain))
        .ok_or_else(|| {
            SetupError::Invalid(
                "domain",
                format!("{domain} is not a domain of {organization_id}"),
            )
        })
}

/// Changes one domain's state and emits `event` with the payload `payload` builds from it.
fn change_domain(
    store: &mut Store,
    organization_id: &str,
    index: usize,
    state: DomainState,
    event: &'static str,
    payload: impl FnOnce(&Domain) -> Value,
) -> Step {
    let now = store.now();
    let Some(domain) = store
        .organizations
        .get_mut(organization_id)
        .and_then(|o| o.domains.get_mut(index))
    else {
        return Err(SetupError::NoOrganization);
    };
    domain.state = state;
    domain.updated_at = now;
    let domain = domain.clone();
    let event_id = store.emit(event, Some(organization_id), payload(&domain));
    Ok(Outcome {
        events: vec![event_id],
        changed: ("organization_domain", domain.to_json()),
    })
}

/// Marks a pending or failed domain verified (the DNS record was found, or verification was
/// restarted and succeeded) and emits `organization_domain.verified`.
pub(crate) fn verify_domain_at(store: &mut Store, organization_id: &str, index: usize) -> Step {
    let current = organization(store, organization_id)?
        .domains
        .get(index)
        .ok_or(SetupError::NoOrganization)?;
    if !matches!(current.state, DomainState::Pending | DomainState::Failed) {
        return Err(SetupError::Conflict(format!(
            "The domain {} is already verified.",
            current.domain
        )));
    }
    change_domain(
        store,
        organization_id,
        index,
        DomainState::Verified,
        events::DOMAIN_VERIFIED,
        Domain::to_json,
    )
}

/// [`verify_domain_at`] by domain name.
pub(crate) fn verify_domain(store: &mut Store, organization_id: &str, domain: &str) -> Step {
    let index = domain_index(store, organization_id, domain)?;
    verify_domain_at(store, organization_id, index)
}

/// A pending domain fails verification: `failed`, and `organization_domain.verification_failed`
/// with `reason`.
pub(crate) fn fail_domain(
    store: &mut Store,
    organization_id: &str,
    domain: &str,
    reason: &'static str,
) -> Step {
    let index = domain_index(store, organization_id, domain)?;
    let current = &store.organizations[organization_id].domains[index];
    if current.state != DomainState::Pending {
        return Err(SetupError::Conflict(format!(
            "The domain {} is {}, not pending.",
            current.domain,
            current.state.as_str()
        )));
    }
    change_domain(
        store,
        organization_id,
        index,
        DomainState::Failed,
        events::DOMAIN_VERIFICATION_FAILED,
        |d| json!({ "reason": reason, "organization_domain": d.to_json() }),
    )
}

// === Audit logs and log streams (WorkOS announces none of these) ===

fn audit_outcome(store: &Store, organization_id: &str) -> Outcome {
    Outcome {
        events: Vec::new(),
        changed: (
            "audit_log_configuration",
            store
                .audit_configs
                .get(organization_id)
                .map(AuditConfig::to_json)
                .unwrap_or(Value::Null),
        ),
    }
}

/// Turns the audit log trail `state`, creating the configuration when there is none.
pub(crate) fn set_audit_state(store: &mut Store, organization_id: &str, state: AuditState) -> Step {
    organization(store, organization_id)?;
    match store.audit_configs.get_mut(organization_id) {
        Some(config) if config.state == state => {
            return Err(SetupError::Conflict(format!(
                "audit logs of {organization_id} are already {}",
                state.as_str()
            )));
        }
        Some(config) => config.state = state,
        None => {
            store.audit_configs.insert(
                organization_id.to_owned(),
                AuditConfig::new(organization_id, state),
            );
        }
    }
    Ok(audit_outcome(store, organization_id))
}

/// Gives the organization an active audit log configuration unless it has one (in any state);
/// whether one was created.
pub(crate) fn ensure_audit_logs(store: &mut Store, organization_id: &str) -> bool {
    if store.audit_configs.contains_key(organization_id)
        || !store.organizations.contains_key(organization_id)
    {
        return false;
    }
    store.audit_configs.insert(
        organization_id.to_owned(),
        AuditConfig::new(organization_id, AuditState::Active),
    );
    true
}

/// Creates the organization's log stream, `active` and not yet synced, replacing any it had (the
/// configuration holds one stream). A new configuration is created `active`: streaming audit
/// logs means the trail is in use.
pub(crate) fn create_log_stream(
    store: &mut Store,
    organization_id: &str,
    stream_type: &str,
) -> Step {
    organization(store, organization_id)?;
    let now = store.now();
    let stream = LogStream {
        id: store.new_id("als_"),
        stream_type: stream_type.to_owned(),
        state: LogStreamState::Active,
        last_synced_at: None,
        created_at: now,
    };
    store
        .audit_configs
        .entry(organization_id.to_owned())
        .or_insert_with(|| AuditConfig::new(organization_id, AuditState::Active))
        .log_stream = Some(stream);
    Ok(audit_outcome(store, organization_id))
}

/// The organization's log stream, for a step that needs one.
fn log_stream_of<'a>(
    store: &'a mut Store,
    organization_id: &str,
) -> Result<&'a mut Option<LogStream>, SetupError> {
    organization(store, organization_id)?;
    match store.audit_configs.get_mut(organization_id) {
        Some(config) if config.log_stream.is_some() => Ok(&mut config.log_stream),
        _ => Err(SetupError::Conflict(format!(
            "{organization_id} has no log stream"
        ))),
    }
}

/// The log stream fails to deliver: `error`.
pub(crate) fn log_stream_error(store: &mut Store, organization_id: &str) -> Step {
    let stream = log_stream_of(store, organization_id)?;
    match stream {
        Some(stream) if stream.state != LogStreamState::Error => {
            stream.state = LogStreamState::Error;
        }
        _ => {
            return Err(SetupError::Conflict(format!(
                "the log stream of {organization_id} is already in error"
            )));
        }
    }
    Ok(audit_outcome(store, organization_id))
}

/// Removes the log stream; the configuration stays.
pub(crate) fn delete_log_stream(store: &mut Store, organization_id: &str) -> Step {
    *log_stream_of(store, organization_id)? = None;
    Ok(audit_outcome(store, organization_id))
}

// === Bring your own key ===

/// The customer's key was checked: `vault.byok_key.verification_completed` with `verified`. A
/// verified key is remembered so that deleting it can name its provider.
pub(crate) fn byok_verification(
    store: &mut Store,
    organization_id: &str,
    key_provider: &str,
    verified: bool,
) -> Step {
    organization(store, organization_id)?;
    if verified {
        store
            .byok_keys
            .insert(organization_id.to_owned(), key_provider.to_owned());
    }
    let data = json!({
        "organization_id": organization_id,
        "key_provider": key_provider,
        "verified": verified,
    });
    let event_id = store.emit(
        events::BYOK_VERIFICATION_COMPLETED,
        Some(organization_id),
        data.clone(),
    );
    Ok(Outcome {
        events: vec![event_id],
        changed: ("bring_your_own_key", data),
    })
}

/// The customer's verified key is removed: `vault.byok_key.deleted`.
pub(crate) fn byok_delete(store: &mut Store, organization_id: &str) -> Step {
    organization(store, organization_id)?;
    let key_provider = store
        .byok_keys
        .remove(organization_id)
        .ok_or_else(|| SetupError::Conflict(format!("{organization_id} has no verified key")))?;
    let data = json!({ "organization_id": organization_id, "key_provider": key_provider });
    let event_id = store.emit(events::BYOK_DELETED, Some(organization_id), data.clone());
    Ok(Outcome {
        events: vec![event_id],
        changed: (
            "deleted",
            json!({ "object": "byok_key", "key_provider": key_provider }),
        ),
    })
}

// === Organizations ===

/// What deleting an organization takes with it: its connections, directories, domains, audit
/// log configuration and key. The deletions of connections, directories and domains are
/// announced as if each were deleted on its own, so a consumer that mirrors them from events
/// does not keep them forever. (What WorkOS emits here is unconfirmed.)
pub(crate) fn delete_organization_setup(
    store: &mut Store,
    organization: &Organization,
) -> Vec<String> {
    let mut ids = Vec::new();
    let connections: Vec<String> = store
        .connections
        .values()
        .filter(|c| c.organization_id == organization.id)
        .map(|c| c.id.clone())
        .collect();
    for id in connections {
        ids.extend(
            delete_connection(store, &id)
                .into_iter()
                .flat_map(|o| o.events),
        );
    }
    let directories: Vec<String> = store
        .directories
        .values()
        .filter(|d| d.organization_id == organization.id)
        .map(|d| d.id.clone())
        .collect();
    for id in directories {
        ids.extend(
            delete_directory(store, &id)
                .into_iter()
                .flat_map(|o| o.events),
        );
    }
    for domain in &organization.domains {
        ids.push(store.emit(
            events::DOMAIN_DELETED,
            Some(&organization.id),
            domain.to_json(),
        ));
    }
    store.audit_configs.remove(&organization.id);
    store.byok_keys.remove(&organization.id);
    ids
}
