//! Audit logs and log streams. WorkOS announces none of these changes, so no step here emits
//! an event: a consumer sees them only by polling the audit log configuration.

use serde_json::Value;

use super::{Outcome, SetupError, Step, organization};
use crate::emulator::{
    setup::{AuditConfig, AuditState, LogStream, LogStreamState},
    state::Store,
};

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

/// Gives the organization an active audit log configuration unless it has one (in any state).
pub(crate) fn ensure_audit_logs(store: &mut Store, organization_id: &str) {
    if store.organizations.contains_key(organization_id) {
        store
            .audit_configs
            .entry(organization_id.to_owned())
            .or_insert_with(|| AuditConfig::new(organization_id, AuditState::Active));
    }
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
