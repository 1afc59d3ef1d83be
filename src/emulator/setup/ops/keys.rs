//! Bring your own key: there is no object to read, only the two events.

use serde_json::json;

use super::{Outcome, SetupError, Step, organization};
use crate::emulator::{events, state::Store};

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
