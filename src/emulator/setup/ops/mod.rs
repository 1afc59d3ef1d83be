//! The state changes an Admin Portal setup makes, each with the events WorkOS announces for it.
//! The portal's forms and the control API call these, so a browser and a test script leave the
//! emulator in the same state. Every step checks first and changes after: a refused step
//! changes nothing and emits nothing.
//!
//! A step that would change nothing (activating an active connection, enabling enabled audit
//! logs) is refused as a conflict rather than silently accepted, so a test that assumed the
//! wrong state hears about it.

mod audit;
mod domains;
mod dsync;
mod keys;
mod sso;

use serde_json::Value;

pub(crate) use audit::{
    create_log_stream, delete_log_stream, ensure_audit_logs, log_stream_error, set_audit_state,
};
pub(crate) use domains::{
    add_domain, announce_new_domain, fail_domain, verify_domain, verify_domain_at,
};
pub(crate) use dsync::{
    activate_directory, delete_directory, delete_organization_directory, set_directory_state,
};
pub(crate) use keys::{byok_delete, byok_verification};
pub(crate) use sso::{
    activate_connection, certificate_renewal_required, certificate_renewed, configure_connection,
    deactivate_connection, delete_connection, delete_organization_connection,
};

use crate::emulator::{
    events,
    state::{Organization, Store},
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

/// What deleting an organization takes with it: its connections, directories, domains, audit
/// log configuration and key. The deletions of connections, directories and domains are
/// announced as if each were deleted on its own, so a consumer that mirrors them from events
/// does not keep them forever. (What WorkOS emits here is unconfirmed.)
pub(crate) fn delete_organization_setup(store: &mut Store, organization: &Organization) {
    let connections: Vec<String> = store
        .connections
        .values()
        .filter(|c| c.organization_id == organization.id)
        .map(|c| c.id.clone())
        .collect();
    for id in connections {
        delete_connection(store, &id);
    }
    let directories: Vec<String> = store
        .directories
        .values()
        .filter(|d| d.organization_id == organization.id)
        .map(|d| d.id.clone())
        .collect();
    for id in directories {
        delete_directory(store, &id);
    }
    for domain in &organization.domains {
        store.emit(
            events::DOMAIN_DELETED,
            Some(&organization.id),
            domain.to_json(),
        );
    }
    store.audit_configs.remove(&organization.id);
    store.byok_keys.remove(&organization.id);
}
