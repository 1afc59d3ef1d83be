//! An organization's audit log configuration: the state of its audit log trail and its log
//! stream. It is made by the portal's audit log and log stream pages or the control API's
//! setup; WorkOS announces no event for any of it, so consumers poll this route.

use axum::{
    extract::{Path, State},
    http::StatusCode,
};

use super::ApiResult;
use crate::emulator::{
    Shared,
    wire::{ApiError, json_response},
};

/// `GET /organizations/{id}/audit_log_configuration`: 404 `{"message"}` (WorkOS's spec shape)
/// both for an unknown organization and for one whose audit logs were never set up.
pub(crate) async fn get_audit_log_configuration(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult {
    let store = shared.store();
    if !store.organizations.contains_key(&id) {
        return Err(ApiError::message(
            StatusCode::NOT_FOUND,
            format!("Organization not found: '{id}'."),
        ));
    }
    let config = store.audit_configs.get(&id).ok_or_else(|| {
        ApiError::message(
            StatusCode::NOT_FOUND,
            format!("Audit log configuration not found for organization '{id}'."),
        )
    })?;
    Ok(json_response(StatusCode::OK, &config.to_json()))
}
