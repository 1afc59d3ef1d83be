//! Directory Sync: connecting, breaking, unlinking and deleting directories.

use serde_json::json;

use super::{Outcome, SetupError, Step, organization};
use crate::emulator::{
    events,
    setup::{Directory, DirectoryState},
    state::Store,
};

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
